"""A stand-in for ``journalctl`` in tests (the real one needs systemd's journal).

Records its arguments and pid, prints the lines of ``$FAKE_JOURNAL_FILE`` (``$FAKE_JOURNAL_REPEAT``
times), a line of ``$FAKE_JOURNAL_BIG`` bytes first if set, then with ``--follow`` waits to
be terminated like the real one, unless ``$FAKE_JOURNAL_EXIT`` is set.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    Path(os.environ["FAKE_JOURNAL_ARGS"]).write_text(
        json.dumps({"argv": sys.argv[1:], "pid": os.getpid()})
    )
    out = sys.stdout.buffer
    big = int(os.environ.get("FAKE_JOURNAL_BIG", "0"))
    if big:
        out.write(b'{"MESSAGE": "' + b"x" * big + b'"}\n')
    lines = Path(os.environ["FAKE_JOURNAL_FILE"]).read_bytes()
    for _ in range(int(os.environ.get("FAKE_JOURNAL_REPEAT", "1"))):
        out.write(lines)
    out.flush()
    if "--follow" in sys.argv and "FAKE_JOURNAL_EXIT" not in os.environ:
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
