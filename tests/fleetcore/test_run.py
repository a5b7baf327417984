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
