"""Exceptions of the role-image builder, below the image builder's root."""

from __future__ import annotations

from image.errors import BuildError, InputError


class RecipeError(InputError):
    """The recipe file is missing, not YAML, or does not match the recipe schema."""


class PackageError(BuildError):
    """apt could not resolve or download the package closure, or a .deb is unusable."""


class TreeError(BuildError):
    """The packages' files cannot be combined into one image tree."""
