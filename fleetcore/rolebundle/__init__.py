"""The role-bundle format: what a role bundle is and how it is checked and read.

Shared by the device's role manager (``updater.roles``), which stages and runs bundles, and
the image builder (``image``), which ships the safe-mode stack as one. ``role.yaml``
(:mod:`.spec`), the compose-file rules (:mod:`.policy`), the bundle folder (:mod:`.bundle`),
``.env.template`` (:mod:`.envfile`), the ``docker save`` archives a bundle carries
(:mod:`.images`), the capped tar reader they and the packed bundle are read with
(:mod:`.tarstream`) and the format's errors (:mod:`.errors`). Packing, unpacking onto
``/data``, and everything that runs a bundle stay with the device.

Imports nothing of the project but ``fleetcore``; needs the ``device`` extra (jinja2).
"""
