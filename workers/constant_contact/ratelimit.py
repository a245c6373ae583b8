"""One request budget for the whole cluster, kept in Redis, and when a refused step comes back.

Constant Contact allows 4 requests per second and 10,000 per day per API key: the application,
shared by all its accounts and all our workers on all machines. So the budget lives in Redis and
every request takes a permit from one atomic Lua script first:

* **Per second** — a GCRA pointer (the theoretical arrival time of the next request) spaces
  permits evenly, ``(1 + margin) / per_second`` apart. Even spacing, not bursts of four, leaves a
  margin for the jitter between a permit and the request's arrival, and suits whatever window
  the server counts in.
* **Per day** — a counter for the current UTC day; at 00:00 UTC it starts again. A request that
  is refused or never sent still counts: over-counting costs a little budget, under-counting
  costs a day of 429s.
* **In place or later** — a permit at most ``max_wait_in_place`` ahead is reserved and slept
  for; a later one is not reserved and the step is rescheduled (``RateLimited``).
* **Checked at send time** — a worker that oversleeps (a loaded host, a pause) would send late,
  packed against the next permit holders. So after any sleep the send itself is confirmed
  against a log of real send times: at most ``per_second`` in any ``1 + margin`` seconds.
* **Fair across accounts** — an account may hold only its share of the reservations ahead
  (the in-place horizon divided among the accounts that asked recently), so one account's 500
  waiting exports cannot keep the horizon full while another's single export waits. Each
  account also has its own dispenser of return times, so its refused steps come back staggered
  at about the rate the budget can serve them, behind their own account's queue only.

The clock is Redis's (``TIME``), one clock for every machine; tests inject their own, and
``clock_offset`` shifts it (a test-only knob to reach midnight quickly).
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from contact_exports_client.keys import active_key, budget_key, reserved_key, returns_key, sent_key
from workers.exceptions import RateLimited, WaitReason
from workers.retry import MIN_COUNTDOWN

#: Constant Contact's documented limits per API key.
DEFAULT_PER_SECOND = 4.0
DEFAULT_PER_DAY = 10_000
#: Permits are spaced this fraction wider than the limit allows (5 % => 3.8 requests/s at 4/s):
#: the room that absorbs scheduling and network jitter between a permit and the request.
DEFAULT_MARGIN = 0.05
#: Waits up to this many seconds are slept in place; longer ones reschedule the step.
DEFAULT_MAX_WAIT_IN_PLACE = 1.0
#: Seconds an account counts as competing for the budget after it last asked.
ACTIVE_SECONDS = 10.0
#: Refused steps of one account are told to come back this fraction of a permit apart: a bit
#: faster than permits are granted, so the in-place horizon stays full while work is queued.
RETURN_SPACING = 0.8
#: How many times a send waits for room in the window (a few ms each) before giving up its
#: permit: only a worker that overslept its permit ever waits here.
CONFIRM_TRIES = 3
SECONDS_PER_DAY = 86_400


THROTTLED = WaitReason.THROTTLED
QUOTA = WaitReason.QUOTA

#: ``now``: ARGV[1] (the caller's clock) or Redis's clock, plus the offset ARGV[2].
_CLOCK = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
else
  now = tonumber(ARGV[1]) + tonumber(ARGV[2])
end
"""
#: ``tat``, ``day`` and ``used``: the budget (KEYS[1]) as of ``now``.
_NOW = (
    _CLOCK
    + """
local day = math.floor(now / 86400)
local state = redis.call('HMGET', KEYS[1], 'tat', 'day', 'used')
local tat = tonumber(state[1]) or 0
local used = 0
if tonumber(state[2]) == day then used = tonumber(state[3]) or 0 end
"""
)

#: KEYS: budget, active, reserved(account), returns(account).
#: ARGV: now ('' = Redis TIME), offset, interval, per_day, max_wait, active_seconds, account,
#: max_countdown, return_spacing.
#: Returns {0, wait} granted; {1, retry_after, scheduled 1/0} refused for now; {2, retry_after,
#: reset time} daily budget spent.
ACQUIRE_LUA = (
    _NOW
    + """
local interval = tonumber(ARGV[3])
local per_day = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local max_countdown = tonumber(ARGV[8])
local reset = (day + 1) * 86400
if per_day > 0 and used >= per_day then
  return {2, tostring(reset - now), tostring(reset)}
end
redis.call('ZADD', KEYS[2], now, ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[6]))
redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[6])) + 1)
local accounts = redis.call('ZCARD', KEYS[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local held = redis.call('ZCARD', KEYS[3])
local share = math.max(1, math.floor(math.max(1, math.floor(max_wait / interval)) / accounts))
local start = math.max(tat, now)
local wait = start - now
if held < share and wait <= max_wait then
  redis.call('HSET', KEYS[1], 'tat', tostring(start + interval), 'day', day, 'used', used + 1)
  redis.call('EXPIRE', KEYS[1], 3 * 86400)
  redis.call('ZADD', KEYS[3], start, tostring(start))
  redis.call('PEXPIRE', KEYS[3], math.ceil((wait + interval) * 1000) + 1000)
  return {0, tostring(wait)}
end
local earliest = wait - max_wait
if held >= share then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  earliest = math.max(earliest, tonumber(first[2]) - now)
end
local back = math.max(tonumber(redis.call('GET', KEYS[4]) or '0'), now + earliest)
if back - now > max_countdown then
  return {1, tostring(max_countdown), 0}
end
local following = back + interval * tonumber(ARGV[9])
redis.call('SET', KEYS[4], tostring(following), 'PX', math.ceil((following - now) * 1000) + 1000)
return {1, tostring(back - now), 1}
"""
)

#: KEYS: sent. ARGV: now, offset, window, limit, member. Returns {1, 0} when the request may go
#: now (and logs it), else {0, seconds until the oldest logged send leaves the window}.
CONFIRM_LUA = (
    _CLOCK
    + """
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(oldest[2]) + window - now)}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
return {1, '0'}
"""
)

#: KEYS: budget. ARGV: now, offset, seconds. Nobody gets a permit for ``seconds``.
PENALIZE_LUA = (
    _NOW
    + """
local until_ = now + tonumber(ARGV[3])
if until_ > tat then
  redis.call('HSET', KEYS[1], 'tat', tostring(until_))
  redis.call('EXPIRE', KEYS[1], 3 * 86400)
end
return tostring(until_)
"""
)

#: KEYS: budget. ARGV: now, offset, per_day. Today's budget is spent; returns {now, reset}.
EXHAUST_LUA = (
    _NOW
    + """
redis.call('HSET', KEYS[1], 'day', day, 'used', math.max(used, tonumber(ARGV[3])))
redis.call('EXPIRE', KEYS[1], 3 * 86400)
return {tostring(now), tostring((day + 1) * 86400)}
"""
)

#: KEYS: budget. ARGV: now, offset. Returns {now, day, used, tat}.
USAGE_LUA = (
    _NOW
    + """
return {tostring(now), day, used, tostring(tat)}
"""
)


@dataclass(frozen=True)
class Budget:
    """The application's limits, and how the limiter spends them."""

    per_second: float = DEFAULT_PER_SECOND
    per_day: int = DEFAULT_PER_DAY
    margin: float = DEFAULT_MARGIN
    max_wait_in_place: float = DEFAULT_MAX_WAIT_IN_PLACE
    #: The longest countdown a step may be given (RETRY_MAX_SECONDS).
    max_countdown: float = 120.0

    @property
    def interval(self) -> float:
        """Seconds between two permits anywhere in the cluster."""
        return (1.0 + self.margin) / self.per_second

    @property
    def window(self) -> float:
        """No more than ``burst`` requests go out in any window this long (1 + margin seconds
        for a whole number per second): the permits' own spacing, checked at send time."""
        return self.burst * self.interval

    @property
    def burst(self) -> int:
        return max(1, math.floor(self.per_second))


@dataclass(frozen=True)
class Decision:
    """What the limiter said: go after ``wait`` seconds, or come back after ``wait`` seconds."""

    granted: bool
    wait: float
    reason: WaitReason | None = None
    #: For the daily budget: when it resets (epoch seconds on the limiter's clock).
    resets_at: float | None = None

    def error(self) -> RateLimited:
        if self.reason == QUOTA:
            resumes = _iso(self.resets_at)
            return RateLimited(
                f"the daily request budget is spent; waiting for the reset at {resumes}",
                retry_after=self.wait,
                reason=QUOTA,
                resumes_at=resumes,
            )
        return RateLimited(
            f"the request budget is taken for now; back in {self.wait:.2f}s",
            retry_after=self.wait,
            reason=THROTTLED,
        )


@dataclass(frozen=True)
class Usage:
    now: float
    day: int
    used: int
    next_free: float


class RateLimiter:
    """The cluster-wide budget: ``acquire(account)`` before every API request."""

    def __init__(
        self,
        client: redis.Redis,
        budget: Budget | None = None,
        *,
        clock: Callable[[], float] | None = None,
        clock_offset: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.budget = budget or Budget()
        self._clock = clock
        self._offset = clock_offset
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._confirm = client.register_script(CONFIRM_LUA)
        self._penalize = client.register_script(PENALIZE_LUA)
        self._exhaust = client.register_script(EXHAUST_LUA)
        self._usage = client.register_script(USAGE_LUA)

    def acquire(self, account: str) -> None:
        """Return when a request may be sent (after sleeping up to about a second), or raise
        RateLimited saying when to come back."""
        decision = self.try_acquire(account)
        if not decision.granted:
            raise decision.error()
        wait = decision.wait
        for _ in range(CONFIRM_TRIES):
            if wait > 0:
                self._sleep(wait)
            wait = self.confirm_send()
            if wait == 0:
                return
            if wait > self.budget.interval:
                break  # overslept so far that others used the window: this permit is gone
        raise Decision(False, wait, THROTTLED).error()

    def try_acquire(self, account: str) -> Decision:
        """Reserve a permit if one is near; never sleeps, never raises for a refusal."""
        b = self.budget
        keys = [budget_key(), active_key(), reserved_key(account), returns_key(account)]
        args = [
            *self._time_args(),
            repr(b.interval),
            str(b.per_day),
            repr(b.max_wait_in_place),
            repr(ACTIVE_SECONDS),
            account,
            repr(b.max_countdown),
            repr(RETURN_SPACING),
        ]
        reply: list[Any] = self._acquire(keys=keys, args=args)
        code, seconds = int(reply[0]), float(reply[1])
        if code == 0:
            return Decision(granted=True, wait=seconds)
        if code == 2:
            return Decision(False, seconds, QUOTA, resets_at=float(reply[2]))
        if not int(reply[2]):
            # Beyond the cap the dispenser has no turn to give: spread these at random.
            seconds *= self._rng.uniform(0.5, 1.0)
        return Decision(False, max(seconds, MIN_COUNTDOWN), THROTTLED)

    def confirm_send(self) -> float:
        """Log a send now and return 0, or return how long until the window has room."""
        b = self.budget
        args = [*self._time_args(), repr(b.window), str(b.burst), secrets.token_hex(8)]
        reply: list[Any] = self._confirm(keys=[sent_key()], args=args)
        return 0.0 if int(reply[0]) else max(float(reply[1]), 0.001)

    def penalize(self, seconds: float) -> None:
        """Constant Contact said 429 ``throttled`` anyway: every worker pauses ``seconds``."""
        self._penalize(keys=[budget_key()], args=[*self._time_args(), repr(seconds)])

    def quota_exceeded(self) -> RateLimited:
        """Constant Contact said 429 ``quota_exceeded``: mark today spent for every worker and
        return the error that makes this step wait for the reset."""
        reply: list[Any] = self._exhaust(
            keys=[budget_key()], args=[*self._time_args(), str(self.budget.per_day)]
        )
        now, reset = float(reply[0]), float(reply[1])
        return Decision(False, reset - now, QUOTA, resets_at=reset).error()

    def usage(self) -> Usage:
        reply: list[Any] = self._usage(keys=[budget_key()], args=self._time_args())
        return Usage(float(reply[0]), int(reply[1]), int(reply[2]), float(reply[3]))

    def _time_args(self) -> list[str]:
        now = "" if self._clock is None else repr(self._clock())
        return [now, repr(self._offset)]


class Unlimited:
    """No budget at all: for tools and tests that talk to a server without limits."""

    def acquire(self, account: str) -> None:
        return None

    def penalize(self, seconds: float) -> None:
        return None

    def quota_exceeded(self) -> RateLimited:
        return RateLimited("the daily quota is spent", retry_after=60.0, reason=QUOTA)


def _iso(epoch: float | None) -> str | None:
    if epoch is None or not math.isfinite(epoch):
        return None
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
