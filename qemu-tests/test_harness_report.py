"""What a failed scenario prints: the boot decisions and the serial console."""

from __future__ import annotations

from harness.board import BootRecord, SimulatedPi
from harness.firmware import Decision, Reason
from harness.qemu import End
from harness.report import failure_sections

from fleetcore.run import run


def test_failure_sections_quote_decisions_and_console(tmp_path):
    card = tmp_path / "card.img"
    with card.open("wb") as handle:
        handle.truncate(8 * 1024 * 1024)
    run(["sfdisk", "--quiet", card], input=b"label: gpt\nsize=4MiB, name=config\n")
    pi = SimulatedPi(card, tmp_path / "board", healthy_marker="guest: healthy")
    pi.console_log.write_bytes(b"### boot 1\nguest: hanging\n")
    pi.records.append(
        BootRecord(
            index=1,
            decision=Decision(3, True, Reason.TRYBOOT),
            label="boot_b",
            flag_dropped=False,
            end=End.WATCHDOG,
            healthy_after=None,
            seconds=45.2,
            detail="deadline 45.0 s",
            console_start=0,
            console_end=26,
        )
    )

    sections = dict(failure_sections([pi]))

    decisions = sections["boot decisions (card.img)"]
    assert "boot 1: partition 3 (boot_b) tryboot=True (tryboot flag: [tryboot] boot_partition)" in (
        decisions
    )
    assert "watchdog reset" in decisions and "not healthy" in decisions
    console = sections[f"serial console ({pi.console_log})"]
    assert "guest: hanging" in console
