"""Log records as text for a terminal or as JSON lines for journald, Promtail and Loki.

``FLEET_LOG_FORMAT=json`` (the systemd units and the Overlord's container set it) makes every
record one JSON object: time, level, logger, message, the request id of the HTTP request being
served (set by the Overlord's middleware, passed on by nginx as ``X-Request-ID``), any
``extra=`` fields, and the exception's traceback. Text stays the default for people.
"""

from __future__ import annotations

import json
import logging
import os
from contextvars import ContextVar
from datetime import UTC, datetime

FORMAT_ENV = "FLEET_LOG_FORMAT"
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"

# The id of the request this task serves, for every record logged while serving it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# What every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLines(logging.Formatter):
    """One JSON object per record, keys in a stable order."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            doc["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = (
                    value if isinstance(value, str | int | float | bool | None) else str(value)
                )
        if record.exc_info:
            # A filter may have set the text already (masked: fleetcore.redact.SECRETS).
            doc["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def wants_json() -> bool:
    return os.environ.get(FORMAT_ENV, "text").strip().lower() == "json"


def configure(level: int) -> None:
    """Root logging to stderr at ``level``, text or JSON lines as ``FLEET_LOG_FORMAT`` says."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if wants_json() else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
