"""Roles: signed Docker Compose stacks on the data partition, and the safe-mode stack.

A role bundle (``role.yaml``, a compose file, ``config/``, ``.env.template``; the format is
:mod:`fleetcore.rolebundle`) is validated (:mod:`fleetcore.rolebundle.bundle`), shipped as a
``tar.zst`` TUF target (:mod:`.archive`), staged into ``/data/roles/<role>/<version>/`` and
switched to with an atomic symlink swap (:mod:`.layout`), started through ``docker compose``
(:mod:`.compose`) behind a health gate (:mod:`.health`), and rolled back or replaced by the
safe-mode stack when it fails (:mod:`.manager`).

May import: fleetcore and signing only.
"""
