"""The disk contract: one definition, read the same way by the builder and the agent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleetcore.layout import (
    LABELS,
    Slot,
    autoboot_txt,
    boot_partition,
    slot_label,
    slot_of_boot_partition,
)
from image.layout import Sizes, plan
from updater.autoboot import partition_for

SOURCE = Path(__file__).parents[2]


def test_the_builder_lays_out_the_partitions_in_the_shared_order():
    numbered = [(p.number, p.label) for p in plan(Sizes(), "seed").partitions]
    assert numbered == list(enumerate(LABELS, start=1))


@pytest.mark.parametrize("slot", list(Slot))
def test_boot_partitions_and_labels_agree(slot: Slot):
    number = boot_partition(slot)
    assert LABELS[number - 1] == slot_label("boot", slot)
    assert slot_of_boot_partition(number) is slot
    assert slot.other.other is slot and slot.other is not slot


@pytest.mark.parametrize("slot", list(Slot))
def test_autoboot_boots_the_committed_slot_and_trials_the_other(slot: Slot):
    text = autoboot_txt(slot).encode()
    assert partition_for(text, tryboot=False) == boot_partition(slot)
    assert partition_for(text, tryboot=True) == boot_partition(slot.other)


def test_no_other_partition_is_a_slot():
    assert {slot_of_boot_partition(n) for n in (0, 1, 4, 5, 6, 7)} == {None}


# Shared contracts that once had several homes: each is now defined exactly once.
_DEFINED_ONCE = {
    r"^class Slot\(": "fleetcore/layout.py",
    r"^def _?free_port\(": "fleetcore/net.py",
    r"^(IN_PROGRESS\w*|ACTIVE_UPDATE_STATES) = frozenset": "fleetcore/wire.py",
    r"^class DeviceOutcome\(": "overlord/rollouts/models.py",
    r"^class RoleOutcome\(": "updater/roles/decide.py",
    r"^class UpdateStateError\(": "updater/errors.py",
    r"^class OverlordError\(": "overlord/errors.py",
    # The role-bundle format, which the device and the image builder both read.
    r"^class RoleSpec\(": "fleetcore/rolebundle/spec.py",
    r"^ROLE_FILE = ": "fleetcore/rolebundle/spec.py",
    r"^def check_compose\(": "fleetcore/rolebundle/policy.py",
    r"^def load_bundle\(": "fleetcore/rolebundle/bundle.py",
    r"^def check_template\(": "fleetcore/rolebundle/envfile.py",
    r"^def check_archive\(": "fleetcore/rolebundle/images.py",
    r"^class TarReader\b": "fleetcore/rolebundle/tarstream.py",
    r"^class (BundleError|ArchiveError|ImageArchiveError|TemplateError)\(": (
        "fleetcore/rolebundle/errors.py"
    ),
}


@pytest.mark.parametrize(("pattern", "home"), _DEFINED_ONCE.items())
def test_each_shared_contract_is_defined_once(pattern: str, home: str):
    found = []
    for top in (
        "fleetcore",
        "signing",
        "updater",
        "image",
        "overlord",
        "simulator",
        "tests",
        "qemu-tests",
        "bench",
    ):
        for path in (SOURCE / top).rglob("*.py"):
            if re.search(pattern, path.read_text(), flags=re.MULTILINE):
                found.append(path.relative_to(SOURCE).as_posix())
    assert found == [home]
