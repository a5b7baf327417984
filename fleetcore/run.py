"""The one subprocess wrapper: argv lists only, checked, stdin closed, C.UTF-8, logged."""

from __future__ import annotations

import logging
import os
import shlex
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
        proc = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as err:
        raise CommandError(args, None, f"{args[0]} not found on PATH") from err
    except subprocess.TimeoutExpired as err:
        raise CommandError(args, None, f"timed out after {timeout} s") from err
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace") if proc.stderr else ""
        raise CommandError(args, proc.returncode, stderr)
    return proc


def run_text(argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> str:
    """Run a command and return its stdout decoded as UTF-8."""
    proc = run(argv, **kwargs)  # type: ignore[arg-type]
    return proc.stdout.decode()
