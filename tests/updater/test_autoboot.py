"""autoboot.txt: the format the firmware reads, and a rewrite that is never torn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetcore import atomic
from fleetcore.layout import Slot
from updater import autoboot
from updater.autoboot import Autoboot
from updater.errors import FirmwareError

FIXTURES = Path(__file__).parent / "fixtures"


class Crash(BaseException):
    """A kill: nothing may catch it."""


def test_render_matches_the_design_layout():
    assert Autoboot(Slot.A).render() == (FIXTURES / "autoboot-a.txt").read_bytes()
    assert autoboot.read(FIXTURES / "autoboot-a.txt") == Autoboot(Slot.A)


def test_firmware_choice_follows_the_tryboot_flag():
    data = Autoboot(Slot.B).render()
    assert autoboot.partition_for(data, tryboot=False) == 3
    assert autoboot.partition_for(data, tryboot=True) == 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("autoboot-no-ab.txt", "tryboot_a_b=1"),
        ("autoboot-garbage.txt", "neither"),
        ("autoboot-bad-partition.txt", "neither boot_a"),
    ],
)
def test_known_bad_files_are_rejected(name, message):
    with pytest.raises(FirmwareError, match=message):
        autoboot.read(FIXTURES / name)


def test_oversized_file_is_rejected():
    with pytest.raises(FirmwareError, match="512"):
        autoboot.parse(b"#" * 600)


class Injector:
    """Crash at the n-th durable step (write, fsync, syncfs, rename) or after n bytes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps = 0
        self.crash_step: int | None = None
        self.crash_byte: int | None = None
        real_fsync, real_replace, real_fdopen = os.fsync, Path.replace, os.fdopen
        real_syncfs = atomic.syncfs
        injector = self

        def step() -> None:
            injector.steps += 1
            if injector.steps == injector.crash_step:
                raise Crash

        def fsync(fd: int) -> None:
            step()
            real_fsync(fd)

        def replace(self: Path, target: Path) -> Path:
            step()
            return real_replace(self, target)

        class TornWriter:
            def __init__(self, handle) -> None:
                self.handle = handle

            def write(self, data: bytes) -> int:
                step()
                if injector.crash_byte is not None:
                    self.handle.write(data[: injector.crash_byte])
                    self.handle.flush()
                    raise Crash
                return self.handle.write(data)

            def __getattr__(self, name: str):
                return getattr(self.handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self.handle.__exit__(*exc)

        def syncfs(path: Path) -> None:
            step()
            real_syncfs(path)

        monkeypatch.setattr(atomic, "syncfs", syncfs)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(Path, "replace", replace)
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: TornWriter(real_fdopen(*a, **k)))


def test_rewrite_survives_a_crash_at_every_step_and_byte(tmp_path, monkeypatch):
    path = tmp_path / "autoboot.txt"
    old, new = Autoboot(Slot.A), Autoboot(Slot.B)
    injector = Injector(monkeypatch)
    autoboot.write(path, old)
    injector.steps = 0
    autoboot.write(path, new)
    clean_steps = injector.steps
    assert clean_steps == 5  # write, fsync file, syncfs, rename, syncfs

    outcomes = set()
    cases = [("step", n) for n in range(1, clean_steps + 1)]
    cases += [("byte", b) for b in range(len(new.render()))]
    for kind, n in cases:
        path.unlink()
        injector.crash_step = injector.crash_byte = None
        autoboot.write(path, old)
        injector.steps = 0
        if kind == "step":
            injector.crash_step = n
        else:
            injector.crash_byte = n
        with pytest.raises(Crash):
            autoboot.write(path, new)
        injector.crash_step = injector.crash_byte = None
        seen = autoboot.read(path)  # what the firmware would boot: old or new, never torn
        assert path.read_bytes() in (old.render(), new.render())
        outcomes.add(seen.committed)
    assert outcomes == {Slot.A, Slot.B}  # crashes before and after the rename were both hit
