"""A login shell in a pseudo-terminal, for a remote shell session (ADR 0074, shell slice).

The shell runs as the agent's own user (root on a device), in a new session whose
controlling terminal is the PTY, so Ctrl-C and job control behave as on a console. The
master side is non-blocking: the session's one thread reads and writes it between socket
reads and never waits on the shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import signal
import struct
import subprocess
import termios
from collections.abc import Sequence
from pathlib import Path

READ_BYTES = 16 * 1024  # one binary frame at most; well under the 64 KiB frame limit
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TERM = "xterm-256color"
HANGUP_WAIT_S = 2.0


def login_command() -> list[str]:
    """The agent's user's login shell (``/bin/sh`` when its entry names none)."""
    shell = pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    return [shell, "-l"]


def _environment(shell: str) -> dict[str, str]:
    # A clean environment: nothing of the agent's own (its token paths, proxies) leaks in.
    user = pwd.getpwuid(os.getuid())
    return {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": shell,
        "PATH": PATH,
        "TERM": TERM,
        "LANG": "C.UTF-8",
    }


# What a login resets: the agent may have been started with some of these ignored (``nohup``
# ignores SIGHUP, a background job SIGINT and SIGQUIT), and ignored signals are inherited, so
# a shell would then survive its hang-up and its jobs ignore Ctrl-C.
LOGIN_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGPIPE,
)


def _take_terminal() -> None:
    # Runs in the child after setsid(): every job-control signal at its default, as after a
    # login, and the PTY on fd 0 becomes its controlling terminal.
    for number in LOGIN_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def set_size(fd: int, cols: int, rows: int) -> None:
    """Tells the terminal (and, by SIGWINCH, its foreground job) its new size."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    """The terminal's (cols, rows)."""
    rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    return cols, rows


class Pty:
    """One shell on one PTY; :meth:`close` hangs it up and reaps it."""

    def __init__(self, command: Sequence[str], *, cols: int = 80, rows: int = 24) -> None:
        master, slave = os.openpty()
        try:
            set_size(slave, cols, rows)
            home = Path(pwd.getpwuid(os.getuid()).pw_dir)
            self._proc = subprocess.Popen(
                list(command),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=_environment(command[0]),
                cwd=home if home.is_dir() else "/",
                start_new_session=True,
                # Only an ioctl between fork and exec; there is no stdlib way to name the
                # controlling terminal of a subprocess otherwise.
                preexec_fn=_take_terminal,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.fd = master
        self._open = True

    def read(self) -> bytes | None:
        """What the shell wrote, b"" when nothing is waiting, None once the terminal is gone
        (every process holding it has exited)."""
        try:
            return os.read(self.fd, READ_BYTES) or None
        except BlockingIOError:
            return b""
        except OSError:  # EIO: the last holder of the terminal closed it
            return None

    def write(self, data: bytes) -> int:
        """Writes what the terminal takes now; returns how many bytes it took."""
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0

    def resize(self, cols: int, rows: int) -> None:
        set_size(self.fd, cols, rows)

    def exit_status(self) -> int | None:
        """The shell's exit status once it has exited (128 + N when killed by signal N)."""
        code = self._proc.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def close(self) -> None:
        """Hangs up the shell's session (SIGHUP, then SIGKILL) and closes the terminal; a
        second call does nothing (the descriptor's number may belong to another file by then)."""
        for sig in (signal.SIGHUP, signal.SIGKILL):
            if self._proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=HANGUP_WAIT_S)
        if self._open:
            self._open = False
            os.close(self.fd)
