"""autoboot.txt parsing and the firmware's choice, against checked-in good and bad samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import autoboot
from harness.errors import AutobootError
from harness.firmware import Decision, Reason, boot_state, decide

SAMPLES = Path(__file__).parent / "fixtures" / "autoboot"
GOOD = {
    "fleet-a-committed.txt": (2, 3),
    "fleet-b-committed.txt": (3, 2),
    "no-header-no-tryboot.txt": (2, None),
}
BAD = sorted(p.name for p in (SAMPLES / "bad").iterdir())


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_samples_parse(name):
    parsed = autoboot.parse((SAMPLES / "good" / name).read_bytes())

    assert (parsed.boot_partition("all"), parsed.boot_partition("tryboot")) == GOOD[name]


@pytest.mark.parametrize("name", BAD)
def test_bad_samples_are_refused(name):
    with pytest.raises(AutobootError):
        parsed = autoboot.parse((SAMPLES / "bad" / name).read_bytes())
        parsed.boot_partition("all")
        parsed.boot_partition("tryboot")


@pytest.mark.parametrize("name", BAD)
def test_bad_samples_make_the_firmware_boot_partition_1(name):
    decision = decide((SAMPLES / "bad" / name).read_bytes(), tryboot=False)

    assert (decision.partition, decision.reason) == (1, Reason.BAD_AUTOBOOT)
    assert decision.detail


def test_render_round_trips_and_matches_the_design_sample():
    rendered = autoboot.render(committed=2, trial=3)

    assert rendered == (SAMPLES / "good" / "fleet-a-committed.txt").read_bytes()
    parsed = autoboot.parse(rendered)
    assert parsed.sections["all"]["tryboot_a_b"] == "1"


A_COMMITTED = autoboot.render(committed=2, trial=3)


@pytest.mark.parametrize(
    ("text", "tryboot", "expected"),
    [
        (A_COMMITTED, False, Decision(2, False, Reason.ALL)),
        (A_COMMITTED, True, Decision(3, True, Reason.TRYBOOT)),
        (autoboot.render(committed=3, trial=2), True, Decision(2, True, Reason.TRYBOOT)),
        (b"[all]\nboot_partition=2\n", True, Decision(2, True, Reason.TRYBOOT_WITHOUT_SECTION)),
        (None, False, Decision(1, False, Reason.NO_AUTOBOOT)),
        (None, True, Decision(1, True, Reason.NO_AUTOBOOT)),
    ],
    ids=["normal", "trial", "trial-from-b", "trial-without-section", "missing", "missing-trial"],
)
def test_decide(text, tryboot, expected):
    assert decide(text, tryboot=tryboot) == expected


def test_no_all_partition_boots_partition_1_and_says_so():
    decision = decide(b"[tryboot]\nboot_partition=3\n", tryboot=False)

    assert (decision.partition, decision.reason) == (1, Reason.ALL)
    assert "none set" in decision.detail


def test_boot_state_is_the_contract_json():
    state = json.loads(boot_state(Decision(3, True, Reason.TRYBOOT)))

    assert state == {"boot_partition": 3, "tryboot": True}


def test_a_verified_boot_sig_makes_the_boot_state_signed():
    state = json.loads(boot_state(Decision(2, False, Reason.ALL), signed=True))

    assert state == {"boot_partition": 2, "signed": True, "tryboot": False}
