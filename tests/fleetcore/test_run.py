import os
import signal
import time
from pathlib import Path

import pytest

from fleetcore.errors import CommandError
from fleetcore.run import run, run_text


def test_stdout_and_locale():
    assert run_text(["sh", "-c", "echo $LANG"]).strip() == "C.UTF-8"


def test_stdin_closed():
    assert run_text(["cat"]) == ""


def test_failure_quotes_last_stderr_line():
    with pytest.raises(CommandError, match=r"sh exited 3: boom") as info:
        run(["sh", "-c", "echo noise >&2; echo boom >&2; exit 3"])
    assert info.value.returncode == 3


def test_missing_program():
    with pytest.raises(CommandError, match="not found on PATH"):
        run(["definitely-not-a-program-xyz"])


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _grandchild_script(pidfile: Path) -> list[str]:
    """A shell that starts a grandchild, records its PID, then waits for it."""
    return ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]


def _wait_for(pidfile: Path) -> int:
    while not pidfile.exists() or not pidfile.read_text().strip():
        time.sleep(0.01)
    return int(pidfile.read_text())


def test_a_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandError, match="timed out after 1 s"):
        run(_grandchild_script(pidfile), timeout=1)
    assert _gone(_wait_for(pidfile))


class _Interrupted(Exception):
    pass


def test_an_exception_while_waiting_kills_the_whole_process_group(tmp_path):
    """What a build's SIGTERM (turned into BuildInterrupted) or a Ctrl-C does mid-command."""
    pidfile = tmp_path / "pid"

    def interrupt(_signum, _frame):
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(_Interrupted):
            run(_grandchild_script(pidfile), capture=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert _gone(_wait_for(pidfile))


def test_a_command_runs_in_its_own_process_group():
    assert run_text(["sh", "-c", "ps -o pgid= -p $$"]).strip() != str(os.getpgid(0))


def test_input_is_passed_and_a_finished_group_is_left_alone(tmp_path):
    pidfile = tmp_path / "pid"
    assert (
        run_text(
            ["sh", "-c", f"cat; sleep 300 > /dev/null 2>&1 & echo $! > {pidfile}"], input=b"in\n"
        )
        == "in\n"
    )
    pid = _wait_for(pidfile)
    try:
        assert _alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
