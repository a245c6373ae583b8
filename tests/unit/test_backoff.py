from __future__ import annotations

import random

from workers.retry import JITTER, after_failure, exponential


def test_waits_grow_then_stay_under_the_cap() -> None:
    rng = random.Random(7)
    waits = [exponential(n, initial=2, cap=60, rng=rng) for n in range(12)]
    assert all(w <= 60 for w in waits)
    assert waits[0] <= 2 * JITTER[1]
    assert waits[3] > waits[0]
    assert min(waits[8:]) >= 60 * JITTER[0]


def test_jitter_spreads_equal_attempts() -> None:
    rng = random.Random(1)
    waits = {exponential(3, initial=1, cap=100, rng=rng) for _ in range(20)}
    assert len(waits) == 20
    assert all(8 * JITTER[0] <= w <= 8 * JITTER[1] for w in waits)


def test_retry_after_wins_when_longer_but_never_passes_the_cap() -> None:
    rng = random.Random(3)
    assert after_failure(0, initial=1, cap=120, retry_after=30, rng=rng) == 30
    assert after_failure(0, initial=1, cap=120, retry_after=900, rng=rng) == 120
    assert after_failure(0, initial=1, cap=120, retry_after=None, rng=rng) < 2
