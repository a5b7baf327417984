"""``python -m harness``: boot a card by hand."""

from __future__ import annotations

import pytest
from harness.__main__ import main


def test_a_card_without_partition_table_is_one_error_line(tmp_path, capsys):
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 65536)

    assert main([str(junk), "--healthy-marker", "x"]) == 1

    err = capsys.readouterr().err
    expected = f"python -m harness: error: {junk}: no readable partition table"
    assert err.strip().splitlines() == [expected]


@pytest.mark.qemu
def test_boots_the_card_and_prints_the_decisions(card, tmp_path, capsys):
    code = main([str(card), "--healthy-marker", "guest: healthy", "--workdir", str(tmp_path / "w")])

    out = capsys.readouterr().out
    assert code == 0
    assert "boot 1: partition 2 (boot_a) tryboot=False" in out
    assert "guest: healthy on partition 2" in (tmp_path / "w" / "console.log").read_text()
