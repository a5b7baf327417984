"""Path parameters that name a row, bounded by the type of the row's id column.

An id the column cannot hold is a 422, never a database error: PostgreSQL refuses a
parameter out of its column's range (``integer out of range``) where SQLite would merely
find nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from fleetcore.bounded import INT64_MAX

INT32_MAX = 2**31 - 1

BigRowId = Annotated[int, Path(ge=1, le=INT64_MAX)]
"""The id of a row whose key is :data:`overlord.db.BIG_ID` (rollouts, alerts)."""

RowId = Annotated[int, Path(ge=1, le=INT32_MAX)]
"""The id of a row whose key is a plain ``Integer`` (API keys)."""
