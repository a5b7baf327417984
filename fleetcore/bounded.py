"""Bounded field types for everything a device or an operator sends the Overlord.

Every string, list and number that arrives over the network ends up in a database column,
a log line or a metrics label, so each has a bound the whole path can hold: a length cap,
no NUL (PostgreSQL refuses it in text and JSONB), integers that fit a BIGINT, finite floats,
and datetimes that carry a zone and stay in range once converted to UTC. A value outside a
bound is a validation error (a 422 at the Overlord), never a failure deeper down. Request
models on both sides (``fleetcore.wire``, ``overlord.*.schemas``) build their fields from
these types, so one rule holds for every route.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# What PostgreSQL text, varchar and JSONB can hold (other control characters, such as the
# ANSI escapes of a tool's output quoted in a reason, are stored as sent).
NUL_FREE = r"^[^\x00]*$"
# Role, group and label names: what a metrics label, a file name and a LIKE index can carry.
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def text(max_length: int, *, min_length: int = 0) -> StringConstraints:
    """A NUL-free string of at most ``max_length`` characters (use inside ``Annotated``)."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=NUL_FREE)


Name = Annotated[str, StringConstraints(pattern=NAME)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _in_utc(value: datetime) -> datetime:
    # A zone offset can carry 9999-12-31T23:59 past year 9999 (or 0001-01-01 before year 1)
    # when converted to UTC, which is what every column stores: refuse it here, not at flush.
    try:
        return value.astimezone(UTC)
    except OverflowError as err:
        raise ValueError("the time is out of range once converted to UTC") from err


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""A datetime with a zone (a naive one is refused), returned in UTC."""

# Free-form scalars of a device event's ``data``: small enough to store, show and chart.
DataKey = Annotated[str, text(64, min_length=1)]
DataValue = Annotated[str, text(1024)] | Int64 | FiniteFloat | bool | None

# Configuration variables (the Overlord's fleet, group and device configuration, rendered
# into role environment files on the device): an environment variable's name, and a value
# one ``.env`` line can carry (no control character but tab), at most 4 KiB in UTF-8.
CONFIG_KEY = r"^[A-Z][A-Z0-9_]{0,63}$"
CONFIG_VALUE_BYTES = 4096
CONFIG_VALUE = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"


def _fits_config_value(value: str) -> str:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as err:  # a lone surrogate (strict JSON refuses them already)
        raise ValueError("not valid Unicode") from err
    if size > CONFIG_VALUE_BYTES:
        raise ValueError(f"longer than {CONFIG_VALUE_BYTES} bytes in UTF-8")
    return value


ConfigKey = Annotated[str, StringConstraints(pattern=CONFIG_KEY)]
ConfigValue = Annotated[
    str,
    StringConstraints(max_length=CONFIG_VALUE_BYTES, pattern=CONFIG_VALUE),
    AfterValidator(_fits_config_value),
]
