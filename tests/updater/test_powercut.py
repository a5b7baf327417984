"""A power cut after every durable state save, then the device boots again and carries on.

Whatever the cut point, the firmware boots a slot holding a complete, good image, and the
update ends committed on the new slot (a cut trial counts as a failed trial attempt and is
retried within the bound).
"""

from __future__ import annotations

import hashlib

import pytest

from fleetcore.layout import Slot
from fleetcore.version import Version
from fleetcore.wire import UpdateState
from tests.updater.conftest import v1_device, v1_images, v2_images
from tests.updater.device import SimDevice
from updater.engine import EngineResult
from updater.state import StateStore, UpdaterState

V2 = Version("2.0.0")


class PowerCut(BaseException):
    """Not an Exception: nothing in the updater may catch it, as nothing survives a cut."""


class CuttingStore(StateStore):
    def __init__(self, path, cut_at: int | None) -> None:
        super().__init__(path)
        self.cut_at = cut_at
        self.saves: list[str] = []

    def after_save(self, state: UpdaterState) -> None:
        self.saves.append(state.state.value)
        if len(self.saves) == self.cut_at:
            raise PowerCut


def slot_is_good(device: SimDevice, slot: Slot) -> bool:
    for images in (v1_images(), v2_images()):
        if all(
            device.slot_sha256(slot, image, len(data)) == hashlib.sha256(data).hexdigest()
            for image, data in images.items()
        ):
            return True
    return False


def drive(device: SimDevice, source: str, store: StateStore) -> None:
    """What the agent does: resume, then ask for the desired version; reboot when asked."""
    for _ in range(16):
        engine = device.engine(store=store)
        outcome = engine.resume()
        if outcome is EngineResult.IDLE and engine.store.load().state is not UpdateState.COMMITTED:
            outcome = engine.start(V2, source)
        if outcome is EngineResult.REBOOTING:
            device.power_on()
            continue
        if engine.store.load().state is UpdateState.COMMITTED:
            return
    raise AssertionError("the update never committed")


def run_with_cut(device: SimDevice, source: str, cut_at: int | None) -> list[str]:
    store = CuttingStore(device.roots.state_file, cut_at)
    try:
        drive(device, source, store)
    except PowerCut:
        device.power_on(requested_reboot=False)
        assert device.booted() == (device.committed(), False)
        assert slot_is_good(device, device.committed())
        drive(device, source, StateStore(device.roots.state_file))
    return store.saves


@pytest.fixture
def fresh_device(tmp_path, repo):
    count = iter(range(1000))

    def make() -> SimDevice:
        return v1_device(tmp_path / f"device-{next(count)}", repo)

    return make


def test_power_cut_at_every_state_transition(fresh_device, server):
    saves = run_with_cut(fresh_device(), server.tuf_url, None)
    assert saves[-1] == "committed"
    for cut_at in range(1, len(saves) + 1):
        device = fresh_device()
        run_with_cut(device, server.tuf_url, cut_at)
        state = StateStore(device.roots.state_file).load()
        assert state.state is UpdateState.COMMITTED, (cut_at, saves[cut_at - 1])
        device.power_on()  # the next ordinary boot comes up on the new committed slot
        assert device.booted() == (Slot.B, False)
        assert device.committed() is Slot.B
        for image, data in v2_images().items():
            assert device.slot_sha256(Slot.B, image, len(data)) == hashlib.sha256(data).hexdigest()
        assert state.version_floor == V2
