"""The Overlord: Metrica Fleet's control plane (device registry, rollouts, TUF serving)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metrica-fleet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
