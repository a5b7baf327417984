"""Each extra installs and its console scripts start, in a clean venv; ``overlord`` never needs
the image builder (the demo, which does, has its own ``fleet-demo`` entry point and extra)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[1]
_NOT_PACKAGED = ("tests", "qemu-tests", "docs", "bench", "build", "*.egg-info", ".*", "__pycache__")


def _run(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=check, env=env
    )


def test_the_overlord_command_runs_without_the_image_builder():
    """Without pyfastcdc (an [overlord] install), every ``overlord`` subcommand's help works."""
    script = (
        "import sys; sys.modules['pyfastcdc'] = None\n"
        "from overlord.cli import build_parser, main\n"
        "parser = build_parser()\n"
        "commands = parser._subparsers._group_actions[0].choices\n"
        "for name in commands:\n"
        "    try:\n"
        "        main([name, '--help'])\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, name\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded & {'simulator', 'image'}, loaded & {'simulator', 'image'}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This source tree as a wheel, built from a copy so the tree gets no build/ or egg-info."""
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(SOURCE, work / "src", ignore=shutil.ignore_patterns(*_NOT_PACKAGED))
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", work / "src", "-w", work)
    return next(work.glob("metrica_fleet-*.whl"))


def _venv(root: Path, wheel: Path, extra: str) -> Path:
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", f"{wheel}[{extra}]")
    return root / "bin"


def _installed(bin_dir: Path) -> set[str]:
    listing = _run(sys.executable, "-m", "pip", "--python", bin_dir / "python", "list")
    return {line.split()[0].lower() for line in listing.stdout.splitlines()[2:]}


@pytest.mark.integration
def test_each_extra_installs_and_its_commands_start(wheel: Path, tmp_path: Path):
    device = _venv(tmp_path / "device", wheel, "device")
    assert not _installed(device) & {"fastapi", "sqlalchemy", "uvicorn", "pyfastcdc"}
    for command in ("fleet-updater", "fleet-sign"):
        _run(device / command, "--help")

    build = _venv(tmp_path / "build", wheel, "build")
    assert "pyfastcdc" in _installed(build)
    _run(build / "fleet-image", "--help")

    cli = _venv(tmp_path / "cli", wheel, "cli")
    assert not _installed(cli) & {"fastapi", "sqlalchemy", "uvicorn", "tuf", "zstandard"}
    assert "rollouts" in _run(cli / "fleetctl", "--help").stdout
    _run(cli / "fleetctl", "releases", "publish", "--help")

    overlord = _venv(tmp_path / "overlord", wheel, "overlord")
    assert "pyfastcdc" not in _installed(overlord)
    assert "overlord" in _run(overlord / "overlord", "--help").stdout
    _run(overlord / "overlord", "releases", "gc", "--help")
    missing = _run(overlord / "fleet-demo", "--help", check=False)
    assert missing.returncode == 1
    assert "pip install 'metrica-fleet[demo]'" in missing.stderr
    assert "Traceback" not in missing.stderr

    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        overlord / "python",
        "install",
        "-q",
        f"{wheel}[demo]",
    )
    assert "--headless" in _run(overlord / "fleet-demo", "--help").stdout
