"""Release versions: dotted non-negative integers (``1.4.0``, ``2026.11.2``).

Anti-rollback compares versions, so the format is strict: no pre-release tags whose order
an operator could misjudge.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from fleetcore.errors import VersionError

_VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}$")


@functools.total_ordering
class Version:
    """A comparable release version; ``1.2`` equals ``1.2.0``."""

    __slots__ = ("_key", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not _VERSION_RE.fullmatch(text):
            raise VersionError(
                # At most 80 characters of the input: it may come from the network.
                f"invalid version {repr(text)[:80]}: expected 1 to 4 dotted numbers such as 1.4.0"
            )
        self.text = text
        parts = [int(p) for p in text.split(".")]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        self._key = tuple(parts)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Version({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key == other._key

    def __lt__(self, other: Version) -> bool:
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def parse(value: Any) -> Version:
            if isinstance(value, Version):
                return value
            try:
                return cls(value)
            except VersionError as err:
                raise ValueError(str(err)) from err

        return core_schema.no_info_plain_validator_function(
            parse,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
            json_schema_input_schema=core_schema.str_schema(pattern=_VERSION_RE.pattern),
        )
