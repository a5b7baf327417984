"""The Overlord's idea of the time, learnt from its answers' Date headers (ADR 0075).

A Raspberry Pi has no real-time clock: until NTP answers, a device boots at its last saved
time (systemd-timesyncd's clock file), which can be days behind. Request signatures carry
``created``, which the Overlord refuses outside its window, so the device signs with its
clock plus the offset the Overlord's last answer showed. A device whose clock is off sends
one refused request, learns the offset from that refusal's Date header, and the next one
holds. The offset is only as good as the Date header (1 s), well inside the window.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime


class OverlordClock:
    def __init__(self) -> None:
        self.offset_s = 0.0

    def learn(self, date: str | None) -> None:
        """Adopt the offset an answer's Date header shows; an unreadable one changes nothing."""
        if date is None or len(date) > 64:
            return
        try:
            server = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        self.offset_s = server - time.time()

    def now(self) -> float:
        return time.time() + self.offset_s
