"""The one retry policy (``workers.retry``): the backoff, the waits for the request budget, and
when a step gives up."""

from __future__ import annotations

import random

import pytest

from tests.unit.factories import a_job, a_settings, unit_services
from workers.exceptions import (
    ConstantContactError,
    RateLimited,
    StorageError,
    TransientApiError,
    TransientError,
    WaitReason,
)
from workers.export.retries import come_back
from workers.export.tasknames import Stage
from workers.retry import (
    JITTER,
    MIN_COUNTDOWN,
    QUOTA_JITTER,
    RetryPolicy,
    after_failure,
    exponential,
)


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


def test_the_retry_policy() -> None:
    """Moved from the rate limiter's tests (``retry_countdown`` there took the attempt index,
    0 for the first failure; ``countdown`` takes the failures so far, 1 for the first)."""
    rng = random.Random(1)
    policy = RetryPolicy(initial=2, cap=120, max_attempts=8)
    turn = RateLimited("wait", retry_after=0.4)
    assert policy.countdown(turn, 6, rng=rng) == 0.4
    assert policy.countdown(RateLimited("now", retry_after=0.0), 1, cap=9) == MIN_COUNTDOWN
    quota = RateLimited("quota", retry_after=30.0, reason=WaitReason.QUOTA)
    assert 30.0 <= policy.countdown(quota, 1, rng=rng) <= 30.0 + QUOTA_JITTER
    long_quota = RateLimited("quota", retry_after=5000.0, reason=WaitReason.QUOTA)
    assert policy.countdown(long_quota, 1, rng=rng) == 120
    throttled = TransientApiError("429", status=429, error_key="throttled", retry_after=7.0)
    assert 7.0 <= policy.countdown(throttled, 1, rng=rng) <= 120
    backoffs = [policy.countdown(TransientError("503"), n, cap=60, rng=rng) for n in range(1, 9)]
    assert 1.6 <= backoffs[0] <= 2.4 and backoffs[3] >= 12.8 and max(backoffs) == 60


POLICY = RetryPolicy(initial=2, cap=120, max_attempts=3)


def test_a_permanent_storage_error_gives_up_at_once() -> None:
    """Guards the seal that retried forever (550567c): access denied was retried like SlowDown;
    now a permanent StorageError ends at its first failure."""
    assert POLICY.gives_up(StorageError("AccessDenied", permanent=True), 1)


@pytest.mark.parametrize(
    "error",
    [StorageError("SlowDown"), TransientError("503"), TransientApiError("502", status=502)],
)
def test_a_transient_error_gives_up_only_after_max_attempts(error: Exception) -> None:
    """Guards the seal and the webhook (550567c: the seal never gave up, the webhook after a
    fixed 10 tries): both now stop after RETRY_MAX_ATTEMPTS failures and one more try."""
    failures = range(1, POLICY.max_attempts + 2)
    assert [POLICY.gives_up(error, n) for n in failures] == [False, False, False, True]


@pytest.mark.parametrize("reason", [WaitReason.THROTTLED, WaitReason.QUOTA])
def test_a_wait_for_the_request_budget_never_gives_up(reason: WaitReason) -> None:
    waiting = RateLimited("budget spent", retry_after=1.0, reason=reason)
    assert not POLICY.gives_up(waiting, 1)
    assert not POLICY.gives_up(waiting, 10 * POLICY.max_attempts)


def test_an_error_no_retry_can_change_gives_up_at_once() -> None:
    assert POLICY.gives_up(ConstantContactError("400 bad request", status=400), 1)
    assert POLICY.gives_up(ValueError("a bug"), 1)


def test_a_download_that_runs_out_of_tries_on_s3_fails_as_a_storage_error(redis_url: str) -> None:
    """S3 down past boto3's retries is retried by the policy (come_back), and giving up on it is
    the contract's StorageError, not ConstantContactError."""
    settings = a_settings(jobs_redis_url=redis_url, retry_max_attempts=1)
    with unit_services(settings, s3=object()) as services:
        job = a_job()
        down = StorageError("S3 create_multipart_upload failed: could not connect")
        again = come_back(services, job, down, Stage.DOWNLOADING, cap=1.0)
        assert 0 < again.countdown <= 1.0
        with pytest.raises(StorageError, match="gave up after 2 attempts: S3 create"):
            come_back(services, job, down, Stage.DOWNLOADING, cap=1.0)
