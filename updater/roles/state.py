"""The role manager's persisted state: failure counts, bad versions, pending swaps, safe mode.

Written atomically before each side effect it describes (Mender-style), so a restart after a
power cut knows an apply was under way and re-checks the role instead of trusting it.

The file is versioned with :mod:`fleetcore.persisted` (``ROLE_STATE_FORMAT``): format 1.0 is
written without the key, as release 0.1.0 wrote it (which spelled it ``"format": 1``), so an
older updater after an A/B fallback reads it; unknown fields are ignored; a newer major is set
aside and the manager starts afresh, which is safe (every role is re-checked on its health).

The models live in :mod:`updater.roles.record` (pure data, for the decisions); safe mode is
written as the booleans every release has written, so the file is the same as before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import ValidationError

from fleetcore import persisted, strictjson
from fleetcore.atomic import atomic_write
from fleetcore.errors import FleetError
from fleetcore.persisted import FileFormat, FormatTooNew
from updater.roles.errors import StateError
from updater.roles.record import (
    MAX_BAD_VERSIONS,
    ManagerState,
    RoleRecord,
    SafeModeCause,
    SafeModeRecord,
)

__all__ = [
    "MAX_BAD_VERSIONS",
    "MAX_STATE_BYTES",
    "ROLE_STATE_FORMAT",
    "STATE_FILE",
    "ManagerState",
    "RoleRecord",
    "SafeModeCause",
    "SafeModeRecord",
    "load_or_reset",
    "load_state",
    "save_state",
]

STATE_FILE = ".roles-state.json"

log = logging.getLogger(__name__)


ROLE_STATE_FORMAT = FileFormat(1, 0)


# A few roles with twenty bad versions and an error each: a few KB; far more is not ours.
MAX_STATE_BYTES = 1024 * 1024


def load_or_reset(path: Path) -> ManagerState:
    """The state, or a fresh one when the file is corrupt (kept aside for a post-mortem).

    An unattended device must not stop managing roles over an unreadable file: with a fresh
    state every role is re-checked on its health, which is safe, only less informed.
    """
    try:
        return load_state(path)
    except FormatTooNew as err:
        log.error("%s; set aside as %s.newer, starting from a fresh state", err, path.name)
        path.replace(path.with_name(path.name + ".newer"))
        return ManagerState()
    except StateError as err:
        log.error("%s; starting from a fresh state", err)
        path.replace(path.with_name(path.name + ".corrupt"))
        return ManagerState()


def load_state(path: Path) -> ManagerState:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ManagerState()
    what = f"{path}"
    try:
        doc = strictjson.loads(data, what=what, max_bytes=MAX_STATE_BYTES)
        if isinstance(doc, dict) and doc.get("format") == 1 and type(doc["format"]) is int:
            del doc["format"]  # how 0.1.0 spelled format 1.0
        fields = persisted.load(json.dumps(doc).encode(), current=ROLE_STATE_FORMAT, what=what)
        return ManagerState.model_validate(fields)
    except FormatTooNew:
        raise
    except (FleetError, ValueError, ValidationError) as err:
        raise StateError(
            f"{path} is corrupt: {err.__class__.__name__}",
            hint="move it aside; the manager re-checks every role on the next run",
        ) from err


def save_state(path: Path, state: ManagerState) -> None:
    fields = state.model_dump(mode="json")
    atomic_write(path, persisted.dump(fields, current=ROLE_STATE_FORMAT) + b"\n")
