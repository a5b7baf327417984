"""Secrets out of messages: what errors and logs may say about a URL or a value.

Device logs go to Loki (the ``system`` role), so an error that quotes a proxy URL with its
password, or a validation error that quotes a token, leaks it. Messages are built from these
helpers instead of from the raw values, and :data:`SECRETS`, a log filter that learns each
secret where the process reads it (the device token, the enrolment token, the proxy
password, the Wi-Fi key), masks them in every log record and every error a CLI prints, as a
last line of defence against a library or a server that quotes one.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

# What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]*@")
MASK = "***"
# Shorter values occur in ordinary text too often to be masked without garbling it.
MIN_SECRET_LENGTH = 4


def url(text: str) -> str:
    """``text`` with the user-info of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def secrets(text: str, *values: str | None) -> str:
    """``text`` with every given secret value (of 4 characters or more) masked, URLs too."""
    # Longest first: a secret that contains another is masked whole.
    for value in sorted((v for v in values if v), key=len, reverse=True):
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, MASK)
    return url(text)


class SecretFilter(logging.Filter):
    """Masks the secrets it was told of (and URL user-info) in every record it sees.

    Put on handlers (:func:`install`): a filter on a logger does not see the records of its
    child loggers, a handler's sees them all. The message is formatted with its arguments
    first, and the exception's traceback text is masked too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._values.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)

    def mask(self, text: str) -> str:
        with self._lock:
            values = tuple(self._values)
        return secrets(text, *values)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: shown raw rather than raised into the caller
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.mask(message), None
        for key, value in list(vars(record).items()):  # extra= fields: JSON lines carry them
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.mask(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


# The process's: each secret is added where it is read.
SECRETS = SecretFilter()


def install(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Put :data:`SECRETS` on ``handlers`` (default: the root logger's)."""
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if SECRETS not in handler.filters:
            handler.addFilter(SECRETS)
