"""The vendored xterm.js is what its SHA256SUMS names (scripts/vendor-xterm writes both),
with its licences beside it and no reference to a source map it does not ship."""

from __future__ import annotations

import hashlib
from pathlib import Path

from overlord.dashboard import routes

VENDOR = Path(routes.__file__).parent / "static" / "vendor" / "xterm"


def test_the_vendored_files_match_their_checksums_and_carry_their_licences():
    listed = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    assert set(listed) == {"xterm.js", "addon-fit.js", "xterm.css", "LICENSE", "LICENSE.addon-fit"}
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "MIT" in (VENDOR / "README.md").read_text()
    assert "Permission is hereby granted" in (VENDOR / "LICENSE").read_text()
    assert b"sourceMappingURL" not in (VENDOR / "xterm.js").read_bytes()
