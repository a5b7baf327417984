"""The product under test: the real fleet image, signed releases and an Overlord on the host."""

import sys
from pathlib import Path


def tool(name: str) -> Path:
    """The command ``name`` (fleet-image, fleet-sign, ...) of the venv running the tests."""
    return Path(sys.executable).with_name(name)
