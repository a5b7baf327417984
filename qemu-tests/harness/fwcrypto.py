"""The simulated firmware cryptography service: an HMAC under a device secret the guest never sees.

A Raspberry Pi's firmware computes HMAC-SHA256 under the OTP device key for the OS (raspberrypi/
utils ``rpifwcrypto``, the mailbox tag behind ``rpi-fw-crypto``); the key stays in the
firmware. The harness plays that firmware with a per-board secret on the host and answers over
a character device in the guest, one request per line (ADR 0076):

    HMAC <message>        ->  OK <HMAC-SHA256(secret, message), 64 hex digits>
                          ->  ERR <reason>     (empty message, longer than the firmware's 2048)

:func:`answer` is the pure protocol; :class:`PtyFirmware` serves it on a pseudo-terminal whose
slave end the guest side opens like the virtio port.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import tty
from pathlib import Path
from types import TracebackType

MESSAGE_MAX = 2048
"""The firmware's HMAC message limit (RPI_FW_CRYPTO_HMAC_MSG_MAX_SIZE)."""


def answer(secret: bytes, request: bytes) -> bytes:
    """The firmware's reply line to one request line (both without the newline)."""
    verb, _, message = request.partition(b" ")
    if verb != b"HMAC":
        return b"ERR unknown request"
    if not message or len(message) > MESSAGE_MAX:
        return b"ERR the message must be 1 to %d bytes" % MESSAGE_MAX
    return b"OK " + hmac.new(secret, message, hashlib.sha256).hexdigest().encode()


class PtyFirmware:
    """Serves :func:`answer` on a pseudo-terminal until closed; ``port`` is the guest's end."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._master, self._slave = os.openpty()
        # Raw: no echo of the replies back to the server, no line editing.
        tty.setraw(self._slave)
        self.port = Path(os.ttyname(self._slave))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:
                return  # closed
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                os.write(self._master, answer(self._secret, line.rstrip(b"\r")) + b"\n")

    def close(self) -> None:
        # With the last slave descriptor closed the server's read fails and its thread ends.
        os.close(self._slave)
        self._thread.join()
        os.close(self._master)

    def __enter__(self) -> PtyFirmware:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
