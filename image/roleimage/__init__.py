"""Role images from Debian packages: a recipe in, a ``docker save`` archive out.

``recipe`` loads the YAML recipe, ``apt`` resolves and downloads the package closure with a
private apt configuration, ``tree`` unpacks the packages' data into one merged-/usr file tree,
``loader`` (with ``elf``) checks that the dynamic loader finds every library the image's
program needs without an ``ld.so.cache``,
``archive`` writes the layer, config and manifest deterministically, and ``build`` runs the
steps in order. See image/README.md ("Role images") and ADR 0045.
"""
