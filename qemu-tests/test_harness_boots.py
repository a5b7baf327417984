"""The harness proves itself: real Debian arm64 kernel, busybox guest, firmware decisions."""

from __future__ import annotations

import json

import pytest
from harness import autoboot
from harness.board import SimulatedPi
from harness.disk import ext4_volume, fat_volume
from harness.firmware import BOOT_STATE, TRYBOOT_FLAG, Reason
from harness.qemu import End, PowerCut
from harness.testdisk import set_plan

pytestmark = pytest.mark.qemu

A, B = 2, 3
TRIAL_FROM_A = "healthy request-tryboot reboot"


def config_file(pi: SimulatedPi, path: str) -> bytes | None:
    return fat_volume(pi.disk, label="config").read(path)


def test_normal_boot_picks_all_and_tells_the_guest(pi: SimulatedPi):
    record = pi.boot()

    assert (record.partition, record.tryboot, record.decision.reason) == (A, False, Reason.ALL)
    assert record.label == "boot_a"
    assert record.end is End.POWEROFF
    assert record.healthy
    assert json.loads(config_file(pi, BOOT_STATE) or b"") == {"boot_partition": A, "tryboot": False}
    assert "guest: boot_partition=2 tryboot=0" in pi.console(record)
    print(f"boot to healthy: {record.healthy_after:.1f} s, whole boot: {record.seconds:.1f} s")


def test_tryboot_flag_boots_the_trial_slot_once(pi: SimulatedPi, card):
    set_plan(card, "boot_a", normal=TRIAL_FROM_A, tryboot="poweroff")
    set_plan(card, "boot_b", normal="poweroff", tryboot="healthy reboot")

    first, trial, after = pi.boot(), pi.boot(), pi.boot()

    assert (first.partition, first.tryboot, first.end) == (A, False, End.REBOOT)
    assert (trial.partition, trial.tryboot, trial.decision.reason) == (B, True, Reason.TRYBOOT)
    assert "guest: boot_partition=3 tryboot=1" in pi.console(trial)
    assert trial.end is End.REBOOT
    assert (after.partition, after.tryboot, after.decision.reason) == (A, False, Reason.ALL)
    assert not after.flag_dropped
    # The third boot asked for another trial; the flag is on the card, not yet consumed.
    assert config_file(pi, TRYBOOT_FLAG) is not None


def test_hang_in_trial_is_reset_by_the_watchdog_and_the_flag_is_lost(pi: SimulatedPi, card):
    set_plan(card, "boot_a", normal=TRIAL_FROM_A, tryboot="poweroff")
    # The trial asks for yet another trial, then hangs: a reset must not honour that flag.
    set_plan(card, "boot_b", normal="poweroff", tryboot="request-tryboot hang")

    pi.boot()
    trial = pi.boot()
    fallback = pi.boot()

    assert (trial.partition, trial.tryboot, trial.end) == (B, True, End.WATCHDOG)
    assert not trial.healthy
    assert "guest: hanging" in pi.console(trial)
    assert (fallback.partition, fallback.tryboot) == (A, False)
    assert fallback.flag_dropped
    assert fallback.healthy


def test_guest_commit_makes_the_new_slot_stick(pi: SimulatedPi, card):
    set_plan(card, "boot_a", normal=TRIAL_FROM_A, tryboot="poweroff")
    set_plan(card, "boot_b", normal="healthy poweroff", tryboot="healthy commit reboot")

    committed = pi.boot_until(lambda r: r.partition == B and not r.tryboot, max_boots=3)

    first, trial = pi.records[:2]
    assert (first.partition, first.end) == (A, End.REBOOT)
    assert (trial.partition, trial.tryboot, trial.end) == (B, True, End.REBOOT)
    assert (committed.index, committed.decision.reason, committed.end) == (
        3,
        Reason.ALL,
        End.POWEROFF,
    )
    on_card = autoboot.parse(config_file(pi, "autoboot.txt") or b"")
    assert (on_card.boot_partition("all"), on_card.boot_partition("tryboot")) == (B, A)


@pytest.mark.parametrize(
    "cut",
    [PowerCut(marker="guest: boot_partition=3 tryboot=1"), PowerCut(after=1.0)],
    ids=["at-marker", "after-1s"],
)
def test_power_cut_during_the_trial_boots_the_committed_slot(pi: SimulatedPi, card, cut):
    set_plan(card, "boot_a", normal=TRIAL_FROM_A, tryboot="poweroff")
    set_plan(card, "boot_b", normal="poweroff", tryboot="healthy commit reboot")

    pi.boot()
    trial = pi.boot(power_cut=cut)
    after = pi.boot()

    assert (trial.partition, trial.tryboot, trial.end) == (B, True, End.POWER_CUT)
    assert not trial.healthy
    assert "guest: committed" not in pi.console(trial)
    assert (after.partition, after.tryboot, after.decision.reason) == (A, False, Reason.ALL)
    assert after.healthy


def test_kernel_panic_in_trial_falls_back(pi: SimulatedPi, card):
    set_plan(card, "boot_a", normal=TRIAL_FROM_A, tryboot="poweroff")
    set_plan(card, "boot_b", normal="poweroff", tryboot="panic")
    boot_b = fat_volume(card, label="boot_b")
    cmdline = (boot_b.read("cmdline.txt") or b"").replace(b"panic=0", b"panic=1")
    boot_b.write("cmdline.txt", cmdline)

    pi.boot()
    trial = pi.boot()
    after = pi.boot()

    assert (trial.partition, trial.end) == (B, End.CRASH)
    assert "Kernel panic" in pi.console(trial)
    assert (after.partition, after.tryboot) == (A, False)


def test_trial_slot_without_kernel_is_unbootable_and_falls_back(pi: SimulatedPi, card):
    set_plan(card, "boot_a", normal=TRIAL_FROM_A, tryboot="poweroff")
    boot_b = fat_volume(card, label="boot_b")
    for name in boot_b.list():
        if name.startswith("vmlinuz"):
            boot_b.delete(name)

    pi.boot()
    trial = pi.boot()
    after = pi.boot()

    assert (trial.partition, trial.tryboot, trial.end) == (B, True, End.UNBOOTABLE)
    assert "vmlinuz" in trial.detail
    assert (after.partition, after.tryboot, after.end) == (A, False, End.REBOOT)


def test_flag_left_before_power_on_is_dropped(pi: SimulatedPi, card):
    fat_volume(card, label="config").write(TRYBOOT_FLAG, b"")

    record = pi.boot()

    assert record.flag_dropped
    assert (record.partition, record.tryboot) == (A, False)
    assert config_file(pi, TRYBOOT_FLAG) is None


def test_synced_guest_state_on_data_survives_a_power_cut_and_is_read_unmounted(
    pi: SimulatedPi, card
):
    set_plan(card, "boot_a", normal="healthy record boot-a request-tryboot reboot", tryboot="")
    set_plan(card, "boot_b", normal="poweroff", tryboot="record trial-b sleep 600")

    pi.boot()
    cut = pi.boot(power_cut=PowerCut(marker="guest: recorded trial-b"))

    assert cut.end is End.POWER_CUT

    assert ext4_volume(card, label="data").read("/guest-log.txt") == b"boot-a\ntrial-b\n"
    assert ext4_volume(card, label="system_a").read("/partition-label") == b"system_a\n"
    assert ext4_volume(card, label="data").read("/missing") is None
