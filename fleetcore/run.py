"""The one subprocess wrapper: argv lists only, checked, stdin closed, C.UTF-8, logged.

Each command runs in its own process group. When the wait for it ends early (its timeout, or
an exception raised in this process meanwhile: Ctrl-C, a build's SIGTERM turned into
``BuildInterrupted``), the whole group is killed, not only the direct child: a killed
``debootstrap`` must not leave its ``dpkg`` writing into a tree that is being cleaned up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from fleetcore.errors import CommandError

log = logging.getLogger(__name__)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command and return its completed process.

    Output is captured by default so that a failure can quote stderr; pass ``capture=False``
    for long-running steps whose progress should reach the terminal.
    """
    args = [os.fspath(a) for a in argv]
    full_env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **(env or {})}
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=full_env,
            cwd=cwd,
            process_group=0,
        )
    except FileNotFoundError as err:
        raise CommandError(args, None, f"{args[0]} not found on PATH") from err
    with proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            _kill_group(proc)
            raise CommandError(args, None, f"timed out after {timeout} s") from err
        except BaseException:
            _kill_group(proc)
            raise
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, stderr.decode(errors="replace") if stderr else "")
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group (members that left it are beyond reach) and reap
    the command itself."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_text(argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> str:
    """Run a command and return its stdout decoded as UTF-8."""
    proc = run(argv, **kwargs)  # type: ignore[arg-type]
    return proc.stdout.decode()
