"""The one retry policy: when a step that failed runs again, and when it stops trying.

Every step that can fail for a moment goes through ``RetryPolicy``: the export's create and
download steps, its polls, the seal and the completion webhook. Three kinds of error:

* ``RateLimited`` (our limiter, or 429 ``quota_exceeded``): a wait, not a failure. It uses up no
  attempt and comes back exactly when the budget has room — a staggered turn, or the daily reset
  plus up to ``QUOTA_JITTER`` — capped, so a long quota wait becomes repeated short countdowns
  that re-check Redis without calling the API.
* Other ``TransientError`` (429 ``throttled``, 5xx, timeouts, broken connections and bodies):
  capped exponential backoff with jitter, a Retry-After asking for longer wins; after
  ``max_attempts`` failures the step gives up. A ``StorageError`` that is not ``permanent`` (S3
  down or overloaded past boto3's own retries) is retried this way too, by the download and the
  seal; giving up on it is still a StorageError, as the contract reports it.
* Anything else, and a ``permanent`` ``StorageError``: no retry at all.

Jitter spreads the retries of many exports that failed together (a 503 burst) so they do not
come back in lock-step; the cap keeps every countdown well under the broker's visibility timeout.
Giving up is never a loop: the caller records why (a failed job's dead letter, a dead seal, a
webhook's log line).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from workers.exceptions import RateLimited, StorageError, TransientError, WaitReason

#: Each wait is the capped exponential value times a factor drawn from this range.
JITTER = (0.8, 1.2)
#: No countdown shorter than this: a retry that comes back sooner only burns a task execution.
MIN_COUNTDOWN = 0.05
#: Seconds a step waits before looking again when another delivery of the same job holds it
#: (creating, or streaming, now).
BUSY_COUNTDOWN = 1.0
#: Up to this many seconds are added to a wait for the daily reset, so the cluster does not
#: stampede at 00:00 UTC.
QUOTA_JITTER = 1.0


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


def retryable(error: BaseException) -> bool:
    """Whether another attempt may succeed where this one failed."""
    if isinstance(error, TransientError):
        return True
    return isinstance(error, StorageError) and not error.permanent


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff from ``initial`` doubling to ``cap`` seconds; at most ``max_attempts`` failures
    (RETRY_INITIAL_SECONDS, RETRY_MAX_SECONDS, RETRY_MAX_ATTEMPTS)."""

    initial: float
    cap: float
    max_attempts: int

    def gives_up(self, error: BaseException, failures: int) -> bool:
        """After the ``failures``-th failure (counting this one), is this the end?

        A wait for the request budget is never the end here (the deadline bounds it).
        """
        if isinstance(error, RateLimited):
            return False
        return not retryable(error) or failures > self.max_attempts

    def next_try(self, error: BaseException, failures: int) -> float | None:
        """Seconds before the attempt after the ``failures``-th failure, or None: give up."""
        return None if self.gives_up(error, failures) else self.countdown(error, failures)

    def countdown(
        self,
        error: BaseException,
        failures: int,
        *,
        cap: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds before the attempt after the ``failures``-th failure (RateLimited: none)."""
        cap = self.cap if cap is None else cap
        if isinstance(error, RateLimited):
            wait = error.retry_after if error.retry_after is not None else self.initial
            if error.reason == WaitReason.QUOTA:
                wait += (rng or random).uniform(0.0, QUOTA_JITTER)
            return max(MIN_COUNTDOWN, min(wait, cap))
        retry_after = error.retry_after if isinstance(error, TransientError) else None
        attempt = max(failures - 1, 0)
        return after_failure(
            attempt, initial=self.initial, cap=cap, retry_after=retry_after, rng=rng
        )
