"""Per-access-token request limits: a sliding one-second window and a UTC-daily quota.

Only admitted requests are counted, so a client hammering a 429 neither extends
its own penalty nor burns quota, matching the brief "rejected requests have no
effect".  A sliding window (not fixed buckets) means no burst of 2x the limit
can slip through at a bucket boundary.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import StrEnum

WINDOW_SECONDS = 1.0


class Verdict(StrEnum):
    ALLOWED = "allowed"
    THROTTLED = "throttled"
    QUOTA_EXCEEDED = "quota_exceeded"


def utc_today() -> date:
    return datetime.now(UTC).date()


class RateLimiter:
    """Limits keyed by a token fingerprint; a limit of 0 switches that check off."""

    def __init__(
        self,
        per_second: int,
        per_day: int,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = utc_today,
    ) -> None:
        self.per_second = per_second
        self.per_day = per_day
        self._clock = clock
        self._today = today
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._daily: dict[str, tuple[date, int]] = {}

    def check(self, key: str) -> Verdict:
        """Admit and count one request, or say why it is refused (and count nothing)."""
        with self._lock:
            now = self._clock()
            day = self._today()
            used_day, used = self._daily.get(key, (day, 0))
            if used_day != day:
                used = 0
            if self.per_day > 0 and used >= self.per_day:
                return Verdict.QUOTA_EXCEEDED
            recent = self._recent.setdefault(key, deque())
            while recent and recent[0] <= now - WINDOW_SECONDS:
                recent.popleft()
            if self.per_second > 0 and len(recent) >= self.per_second:
                return Verdict.THROTTLED
            if self.per_second > 0:
                recent.append(now)
            self._daily[key] = (day, used + 1)
            return Verdict.ALLOWED

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._daily.clear()
