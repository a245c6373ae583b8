"""Wait schedules: how long a task stays away before its next attempt.

Jitter spreads the retries of many exports that failed together (a 503 burst) so they do not
come back in lock-step; the cap keeps every countdown well under the broker's visibility timeout.
"""

from __future__ import annotations

import random

#: Each wait is the capped exponential value times a factor drawn from this range.
JITTER = (0.8, 1.2)


def exponential(
    attempt: int,
    *,
    initial: float,
    cap: float,
    factor: float = 2.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds before the next attempt: initial x factor^attempt, jittered, never over cap."""
    draw = (rng or random).uniform(*JITTER)
    base = initial * factor ** min(attempt, 64)
    return min(cap, base * draw)


def after_failure(
    attempt: int,
    *,
    initial: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Like ``exponential``, but a server's Retry-After wins when it asks for longer."""
    delay = exponential(attempt, initial=initial, cap=cap, rng=rng)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
