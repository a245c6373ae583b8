"""The cluster-wide limiter against a real Redis (db 15, flushed around each test), on a clock the
test drives: many simulated workers and accounts, and the UTC day rolling over."""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest
import redis

from workers.constant_contact.ratelimit import QUOTA, THROTTLED, Budget, RateLimiter
from workers.exceptions import RateLimited

#: 2026-11-26 23:59:58 UTC: two seconds before a reset.
BEFORE_MIDNIGHT = datetime(2026, 11, 26, 23, 59, 58, tzinfo=UTC).timestamp()
#: How long a request takes in the simulations (the worker asks again after it).
REQUEST_SECONDS = 0.05


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(r: redis.Redis, clock: Clock, **budget: float) -> RateLimiter:
    return RateLimiter(r, Budget(**budget), clock=clock, rng=random.Random(7))  # type: ignore[arg-type]


def simulate(
    lim: RateLimiter, clock: Clock, waiters: dict[str, int], seconds: float
) -> tuple[list[tuple[float, str]], dict[str, list[float]]]:
    """Workers that always have a request to make: granted ones send after their wait and ask
    again when the request is done; refused ones come back when told (a countdown).
    Returns every request's start and, per account, how long each request waited."""
    start = clock.now
    events: list[tuple[float, int, str, float]] = []
    seq = 0
    for account, count in waiters.items():
        for _ in range(count):
            heapq.heappush(events, (start + seq * 0.001, seq, account, start + seq * 0.001))
            seq += 1
    sent: list[tuple[float, str]] = []
    waited: dict[str, list[float]] = defaultdict(list)
    while events and events[0][0] < start + seconds:
        at, _, account, asked = heapq.heappop(events)
        clock.now = at
        decision = lim.try_acquire(account)
        seq += 1
        if decision.granted:
            go = at + decision.wait
            sent.append((go, account))
            waited[account].append(go - asked)
            heapq.heappush(events, (go + REQUEST_SECONDS, seq, account, go + REQUEST_SECONDS))
        else:
            heapq.heappush(events, (at + decision.wait, seq, account, asked))
    return sorted(sent), waited


def most_in_one_second(starts: list[float]) -> int:
    """The largest number of requests inside any window [t, t + 1s)."""
    best, first = 0, 0
    for last, t in enumerate(starts):
        while t - starts[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_eight_busy_workers_use_the_budget_and_never_exceed_it(r: redis.Redis) -> None:
    clock = Clock(1_800_000_000.0)
    sent, _ = simulate(limiter(r, clock), clock, {"a": 8}, seconds=30)
    starts = [t for t, _ in sent]
    assert most_in_one_second(starts) <= 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 1.05 / 4 - 1e-6  # evenly spaced with the margin, never a burst
    steady = [t for t in starts if t >= starts[0] + 2]
    rate = len(steady) / (starts[-1] - steady[0])
    assert rate >= 0.9 * 4


def test_one_account_with_a_crowd_does_not_starve_another(r: redis.Redis) -> None:
    clock = Clock(1_800_000_000.0)
    sent, waited = simulate(limiter(r, clock), clock, {"crowd": 60, "single": 1}, seconds=40)
    starts = [t for t, _ in sent]
    assert most_in_one_second(starts) <= 4
    single = [t for t, account in sent if account == "single"]
    # The single export gets about half the budget while both want more, and never waits long.
    assert len(single) >= 0.35 * len(sent)
    assert max(waited["single"]) < 2.5
    assert len(sent) / 40 >= 0.9 * 4


def test_waits_up_to_a_second_happen_in_place_longer_ones_reschedule(r: redis.Redis) -> None:
    clock = Clock(1_800_000_000.0)
    slept: list[float] = []
    # Five workers asking at the same moment (the clock does not move while they sleep).
    lim = RateLimiter(r, Budget(), clock=clock, sleep=slept.append)
    for _ in range(4):
        lim.acquire("a")
    assert slept == pytest.approx([0.2625, 0.525, 0.7875])  # the first needed no sleep
    with pytest.raises(RateLimited) as caught:
        lim.acquire("a")
    assert caught.value.reason == THROTTLED
    assert 0 < (caught.value.retry_after or 0) <= 1.0
    assert len(slept) == 3


def test_sends_are_checked_against_the_window_when_they_really_go(r: redis.Redis) -> None:
    clock = Clock(1_800_000_000.0)
    lim = limiter(r, clock)
    for _ in range(4):
        assert lim.confirm_send() == 0
        clock.now += 0.2
    assert lim.confirm_send() == pytest.approx(0.25)  # the first send leaves at +1.05 s
    clock.now += 0.25
    assert lim.confirm_send() == 0


def test_a_worker_that_overslept_its_permit_does_not_pack_the_window(r: redis.Redis) -> None:
    clock = Clock(1_800_000_000.0)
    others = limiter(r, clock)
    assert others.try_acquire("a").granted

    def paused(seconds: float) -> None:
        clock.now += seconds + 0.5  # the host stalled; meanwhile the others sent on time
        for _ in range(4):
            assert others.confirm_send() == 0

    late = RateLimiter(r, Budget(), clock=clock, sleep=paused)
    with pytest.raises(RateLimited) as caught:
        late.acquire("a")
    assert caught.value.reason == THROTTLED and (caught.value.retry_after or 0) <= 1.05
    assert r.zcard("contact_exports:ratelimit:sent") == 4


def test_the_daily_budget_waits_for_midnight_utc_and_then_resumes(r: redis.Redis) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    lim = limiter(r, clock, per_day=3)
    other_worker = limiter(r, clock, per_day=3)
    for _ in range(3):
        assert lim.try_acquire("a").granted
        clock.now += 0.3
    decision = other_worker.try_acquire("b")
    assert not decision.granted and decision.reason == QUOTA
    assert decision.wait == pytest.approx(BEFORE_MIDNIGHT + 2 - clock.now)
    error = decision.error()
    assert error.resumes_at == "2026-11-27T00:00:00Z"
    clock.now = BEFORE_MIDNIGHT + 2.001
    assert other_worker.try_acquire("b").granted
    assert lim.usage().used == 1


def test_a_quota_answer_from_the_api_stops_every_worker_until_the_reset(r: redis.Redis) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    lim = limiter(r, clock)
    error = lim.quota_exceeded()
    assert error.reason == QUOTA and error.retry_after == pytest.approx(2.0)
    assert limiter(r, clock).try_acquire("any").reason == QUOTA
    clock.now += 2.5
    assert limiter(r, clock).try_acquire("any").granted


def test_a_throttled_answer_pauses_every_worker(r: redis.Redis) -> None:
    clock = Clock(1_800_000_000.0)
    limiter(r, clock).penalize(3.0)
    decision = limiter(r, clock).try_acquire("a")
    assert not decision.granted and decision.wait == pytest.approx(2.0)
    clock.now += 2.5
    assert limiter(r, clock).try_acquire("a").wait == pytest.approx(0.5)


def test_redis_time_is_the_default_clock_and_the_offset_shifts_it(r: redis.Redis) -> None:
    assert RateLimiter(r).usage().now == pytest.approx(time.time(), abs=2.0)
    shifted = RateLimiter(r, clock_offset=86_400.0).usage()
    assert shifted.day == int((time.time() + 86_400) // 86_400)
