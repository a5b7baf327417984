"""The simulated firmware cryptography service: an HMAC under a device secret the guest never sees.

A Raspberry Pi's firmware computes HMAC-SHA256 under the OTP device key for the OS (raspberrypi/
utils ``rpifwcrypto``, the mailbox tag behind ``rpi-fw-crypto``); the key stays in the
firmware. The harness plays that firmware with a per-board secret on the host and answers over
a character device in the guest, one request per line (ADR 0076):

    HMAC <message>        ->  OK <HMAC-SHA256(secret, message), 64 hex digits>
                          ->  ERR <reason>     (empty message, longer than the firmware's 2048)

:func:`answer` is the pure protocol. :class:`SocketFirmware` serves it on a Unix socket that
QEMU connects a virtio-serial port named ``fleet.fwcrypto`` to (:meth:`SocketFirmware.qemu_args`);
:class:`PtyFirmware` serves it on a pseudo-terminal whose slave end a test opens the way the
guest opens the port. Both run until ``close()`` (use ``contextlib.closing``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import socket
import threading
import tty
from collections.abc import Callable
from pathlib import Path

MESSAGE_MAX = 2048
"""The firmware's HMAC message limit (RPI_FW_CRYPTO_HMAC_MSG_MAX_SIZE)."""
PORT_NAME = "fleet.fwcrypto"
"""The virtio-serial port's name, which the initramfs looks up in /sys/class/virtio-ports."""


def answer(secret: bytes, request: bytes) -> bytes:
    """The firmware's reply line to one request line (both without the newline)."""
    verb, _, message = request.partition(b" ")
    if verb != b"HMAC":
        return b"ERR unknown request"
    if not message or len(message) > MESSAGE_MAX:
        return b"ERR the message must be 1 to %d bytes" % MESSAGE_MAX
    return b"OK " + hmac.new(secret, message, hashlib.sha256).hexdigest().encode()


def _serve(secret: bytes, read: Callable[[], bytes], write: Callable[[bytes], object]) -> None:
    """Answers request lines until the stream ends (EOF or an error on read)."""
    pending = b""
    while True:
        try:
            chunk = read()
        except OSError:
            return
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            write(answer(secret, line.rstrip(b"\r")) + b"\n")


def _background(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


class PtyFirmware:
    """Serves :func:`answer` on a pseudo-terminal until closed; ``port`` is the guest's end."""

    def __init__(self, secret: bytes) -> None:
        master, self._slave = os.openpty()
        self._master = master
        # Raw: no echo of the replies back to the server, no line editing.
        tty.setraw(self._slave)
        self.port = Path(os.ttyname(self._slave))
        self._thread = _background(
            lambda: _serve(secret, lambda: os.read(master, 4096), lambda b: os.write(master, b))
        )

    def close(self) -> None:
        # With the last slave descriptor closed the server's read fails and its thread ends.
        os.close(self._slave)
        self._thread.join()
        os.close(self._master)


class SocketFirmware:
    """Serves :func:`answer` on a Unix socket at ``path``, one QEMU connection after another
    (each boot of a board is a new QEMU), until closed."""

    def __init__(self, secret: bytes, path: Path) -> None:
        self.path = path
        self.connections = 0
        """How many guests have connected (one per boot of a board)."""
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        self._thread = _background(lambda: self._accept(secret))

    def _accept(self, secret: bytes) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.connections += 1
            with conn:
                _serve(secret, functools.partial(conn.recv, 4096), conn.sendall)

    def qemu_args(self) -> tuple[str, ...]:
        """A virtio-serial port named :data:`PORT_NAME` on this socket, for ``extra_args``."""
        return (
            "-device",
            "virtio-serial-pci,id=fwserial",
            "-chardev",
            f"socket,id=fwcrypto,path={self.path}",
            "-device",
            f"virtserialport,bus=fwserial.0,chardev=fwcrypto,name={PORT_NAME}",
        )

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()
        self.path.unlink(missing_ok=True)
