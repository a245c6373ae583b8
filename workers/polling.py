"""When to look at an export activity again.

Polls spend the application's shared budget of 4 requests a second, so fewer is better — but a
poll that comes late delays the download. The aim: see each activity completed within
``max(MIN_SLACK_SECONDS, SLACK_FRACTION x its duration)`` of its completion, in as few polls as
the activity's own reports allow.

Everything is reckoned on the server's clock. Constant Contact stamps an activity with
``created_at``, ``started_at`` and ``updated_at``; paces computed between those stamps do not
depend on how far the worker's clock is from the server's, and ``ClockOffset`` turns a target
time on the server's clock into a countdown on the worker's.

While an activity reports no progress there is nothing to predict from, and the wait grows in
proportion to its age (``backoff``): one still pending after a minute is unlikely to finish in
the next second, and a long one shows progress after a few polls. Once ``percent_done`` rises,
``completion_window`` keeps every completion time consistent with what the activity reported,
and ``next_look`` polls just after the latest of them or, when they are spread too widely to be
sure, at a point early enough to be in time if the activity is already done then and
informative if it is not.

``record_look`` turns what one poll of an unfinished activity answered into its timeline and
the clock estimate, so every rule about what the server's answers mean lives here.

These are pure functions: no clock, no I/O, randomness only through the ``rng`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any

from workers.constant_contact.client import Activity, ActivityState, epoch_seconds

#: The latency aimed for: an activity of D seconds is seen completed at most
#: max(MIN_SLACK_SECONDS, SLACK_FRACTION x D) after it completes. The goal (issue 6) is 10 %
#: and at least 2 s; the rest is left for the poll itself and for the download to start.
SLACK_FRACTION = 0.09
MIN_SLACK_SECONDS = 1.5
#: A poll aimed at the latest possible completion comes this long after it, for a server that
#: reports ``completed`` a moment late.
MARGIN_SECONDS = 0.05
#: Share of the slack left over by a prediction that is used to spread the polls of exports
#: created together, so that they do not all come back in the same instant. Kept small: exports
#: created together are already spread by their creation, and every bit is latency (with 0.25
#: the poll that saw completion came ~0.5 s later on average in the 200-export capacity run).
SPREAD_FRACTION = 0.1
#: The same for a poll that probes a wide window, whose information is worth more the later it
#: comes: only a little of its slack is used to spread.
PROBE_SPREAD_FRACTION = 0.05
#: Without progress, the next poll comes after this multiple of the activity's age (jittered by
#: BACKOFF_JITTER): each poll sees it 5.8 to 8.2 times as old as the one before, so an activity
#: that, like the sandbox's, stays ``initialized`` for a tenth of its run is seen processing at
#: least once. From a first poll at 0.3 s the fourth comes after about 100 s. The price: one
#: that completes straight from ``initialized`` may be seen up to ~7 times its age late.
AGE_FACTOR = 6.0
BACKOFF_JITTER = (0.8, 1.2)
#: A predicted wait is at most this multiple of the activity's age, and after a single sighting
#: of progress at most LONE_TRUST_FACTOR times: progress that speeds up (which a single
#: sighting cannot show) must not send the next poll far past the completion.
TRUST_FACTOR = 10.0
LONE_TRUST_FACTOR = 2.0
#: Sightings kept per activity: the first (the longest baseline) and the latest ones.
MAX_SIGHTINGS = 8


@dataclass(frozen=True)
class Sighting:
    """One report while the activity was processing: its ``updated_at`` (epoch seconds, server
    clock) and ``percent_done``, an integer, so the true progress lies in [percent, percent+1)."""

    at: float
    percent: int


@dataclass(frozen=True)
class Timeline:
    """What the server said about one activity, on the server's clock.

    ``looked_at`` is when the latest look found it unfinished: completion comes after that,
    whether or not it reported progress then. ``resolution`` is how coarse the server's
    timestamps are (0.001 for milliseconds, 1 for whole seconds).
    """

    created: float
    looked_at: float
    started: float | None = None
    sightings: tuple[Sighting, ...] = ()
    resolution: float = 0.001

    def seen(
        self, *, looked_at: float, started: float | None, sighting: Sighting | None
    ) -> Timeline:
        """This timeline after one more look that found the activity unfinished."""
        sightings = self.sightings
        if sighting is not None and sighting.at >= self.created:
            sightings = (*sightings, sighting)
            if len(sightings) > MAX_SIGHTINGS:
                sightings = (sightings[0], *sightings[-(MAX_SIGHTINGS - 1) :])
        return replace(
            self,
            looked_at=max(self.looked_at, looked_at),
            started=started if started is not None else self.started,
            sightings=sightings,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "looked_at": self.looked_at,
            "started": self.started,
            "sightings": [[s.at, s.percent] for s in self.sightings],
            "resolution": self.resolution,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timeline:
        return cls(
            created=float(data["created"]),
            looked_at=float(data["looked_at"]),
            started=float(data["started"]) if data.get("started") is not None else None,
            sightings=tuple(Sighting(float(at), int(p)) for at, p in data.get("sightings", [])),
            resolution=float(data.get("resolution", 0.001)),
        )


@dataclass(frozen=True)
class Window:
    """The activity completes after ``earliest`` and at the latest at ``latest``."""

    earliest: float
    latest: float


@dataclass(frozen=True)
class _Line:
    """``slope x s + intercept``: a bound on the completion time for a progress start ``s``."""

    slope: float
    intercept: float

    def at(self, s: float) -> float:
        return self.slope * s + self.intercept


def completion_window(timeline: Timeline) -> Window | None:
    """Every completion time consistent with what the activity reported; None without progress.

    Model: progress runs at a steady pace from 0 % at a start ``s`` to 100 % at completion
    ``T``, so each sighting (t, p) says p <= 100 (t - s) / (T - s) < p + 1. Which ``s``? A
    server may count progress from creation (the sandbox does) or from ``started_at`` (after
    waiting in a queue), or from anywhere in between; so ``s`` may be any time from
    ``created_at`` to ``started_at`` (to the first sighting of progress if there is none). One
    sighting then leaves a wide window, from "counted from started_at" to "counted from
    created_at"; a second one, further on, narrows it to a few percent. Assuming one of the two
    ends would save a poll, but if the guess is wrong the poll comes late — by far, for a queue
    delay before a short run. If no steady pace fits at all (progress sped up or slowed down),
    the two latest distinct sightings give the window of the current pace.
    """
    sightings = [s for s in timeline.sightings if s.at >= timeline.created]
    progress = [s for s in sightings if s.percent > 0]
    if not progress:
        return None
    latest_start = progress[0].at
    if timeline.started is not None and timeline.created <= timeline.started < latest_start:
        latest_start = timeline.started
    window = _linear_window(sightings, timeline.created, latest_start, timeline)
    return window or _local_window(sightings, timeline)


def _linear_window(
    sightings: Sequence[Sighting], start_lo: float, start_hi: float, timeline: Timeline
) -> Window | None:
    """Completion times consistent with a steady pace from some start in [start_lo, start_hi].

    For a start ``s``, each sighting bounds the completion between two values linear in ``s``;
    the extremes over the polygon these lines enclose lie at its corners, so it is enough to
    try the ends of the range and every point where two of the lines cross.
    """
    r = timeline.resolution
    uppers = [
        _Line(1 - 100 / s.percent, 100 * (s.at + r) / s.percent) for s in sightings if s.percent
    ]
    lowers = [
        _Line(1 - 100 / (s.percent + 1), 100 * (s.at - r) / (s.percent + 1)) for s in sightings
    ]
    lowers.append(_Line(0.0, timeline.looked_at))
    starts = {start_lo, start_hi}
    for one, other in combinations(uppers + lowers, 2):
        if one.slope != other.slope:
            s = (other.intercept - one.intercept) / (one.slope - other.slope)
            if start_lo < s < start_hi:
                starts.add(s)
    earliest, latest = float("inf"), float("-inf")
    for s in starts:
        low = max(line.at(s) for line in lowers)
        high = min(line.at(s) for line in uppers)
        if low <= high:
            earliest, latest = min(earliest, low), max(latest, high)
    return Window(earliest, latest) if earliest <= latest else None


def _local_window(sightings: Sequence[Sighting], timeline: Timeline) -> Window:
    """The window of the current pace, from the two latest sightings that differ."""
    r = timeline.resolution
    last = sightings[-1]
    before = next((s for s in reversed(sightings) if s.percent < last.percent), None)
    if before is None or last.at - before.at <= 2 * r:
        return Window(timeline.looked_at, float("inf"))
    fastest = (last.percent + 1 - before.percent) / (last.at - before.at - 2 * r)
    slowest = (last.percent - before.percent - 1) / (last.at - before.at + 2 * r)
    earliest = last.at - r + (99 - last.percent) / fastest
    latest = last.at + r + (100 - last.percent) / slowest if slowest > 0 else float("inf")
    return Window(max(timeline.looked_at, earliest), max(timeline.looked_at, latest))


def slack(created: float, earliest: float) -> float:
    """How late a poll may see an activity that completes at ``earliest`` or later."""
    return max(MIN_SLACK_SECONDS, SLACK_FRACTION * (earliest - created))


def next_look(timeline: Timeline, now: float, *, rng: random.Random | None = None) -> float | None:
    """Server time at which to poll again, or None while there is no progress to go by.

    If a poll just after the latest possible completion is late by no more than the slack, that
    is the poll (a little later still, within the slack, to spread exports created together).
    Otherwise the poll comes up to a slack after the earliest possible completion: if the
    activity is done by then, it is seen in time; if not, the new sighting narrows the window.
    """
    window = completion_window(timeline)
    if window is None:
        return None
    allowed = slack(timeline.created, window.earliest)
    draw = (rng or random).random()
    if window.latest - window.earliest <= allowed:
        spare = window.earliest + allowed - window.latest
        target = window.latest + MARGIN_SECONDS + SPREAD_FRACTION * spare * draw
    else:
        target = window.earliest + allowed * (1 - PROBE_SPREAD_FRACTION * draw)
    progress = sum(1 for s in timeline.sightings if s.percent > 0)
    trust = TRUST_FACTOR if progress > 1 else LONE_TRUST_FACTOR
    longest = trust * max(now - timeline.created, 0.0)
    return max(now, min(target, now + longest))


def backoff(age: float, *, floor: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait while an activity shows no progress: in proportion to its age.

    The wait grows with how long the activity has run rather than with how often we looked, so
    a long activity reaches its first sighting of progress in a few polls and a short one is
    seen soon; the cap bounds how late an activity that never reports progress is seen.
    """
    draw = (rng or random).uniform(*BACKOFF_JITTER)
    return min(cap, max(floor, AGE_FACTOR * max(age, 0.0) * draw))


def next_poll_at(
    timelines: Sequence[Timeline],
    now: float,
    *,
    floor: float,
    cap: float,
    rng: random.Random | None = None,
) -> float:
    """Server time of a job's next poll, given its unfinished activities (polled together).

    The job is done when its last activity is, so the latest of their targets wins, at least
    ``floor`` from now. Only a wait without progress is capped: a predicted one may be longer
    than a countdown may be (see the broker's visibility timeout), and the caller splits it.
    """
    targets = [now + floor]
    for timeline in timelines:
        target = next_look(timeline, now, rng=rng)
        if target is None:
            target = now + backoff(now - timeline.created, floor=floor, cap=cap, rng=rng)
        targets.append(target)
    return max(targets)


@dataclass(frozen=True)
class ClockOffset:
    """The server's clock minus the worker's, as a lower bound learnt from server timestamps.

    A timestamp in a response was stamped before the worker received it, so
    ``stamp - received`` never exceeds the true offset; the largest such value (usually the
    ``updated_at`` of a processing activity, stamped as it answered) is the closest bound.
    Underestimating the offset only makes a poll later by that much, never early.
    """

    value: float

    def merge(self, stamp: float, received: float) -> ClockOffset:
        return ClockOffset(max(self.value, stamp - received))

    def server(self, worker_time: float) -> float:
        return worker_time + self.value

    def worker(self, server_time: float) -> float:
        return server_time - self.value


def record_look(
    timeline: Timeline | None,
    clock_offset: float | None,
    activity: Activity,
    received: float,
    *,
    first_wait: float,
) -> tuple[Timeline, ClockOffset]:
    """What an unfinished activity just reported, added to its timeline and the clock estimate.

    ``timeline`` and ``clock_offset`` are what earlier looks learnt (None at the first look);
    ``received`` is the worker's time the answer arrived. Without a ``created_at`` to go by the
    timeline starts on our clock, at the latest moment the activity can have been created: the
    first look comes at least ``first_wait`` (POLL_INITIAL_SECONDS) after the create.
    """
    created, started, updated = (
        epoch_seconds(stamp)
        for stamp in (activity.created_at, activity.started_at, activity.updated_at)
    )
    if timeline is None:
        origin, resolution = created or (received - first_wait, 0.001)
        timeline = Timeline(created=origin, looked_at=origin, resolution=resolution)
    offset = ClockOffset(
        clock_offset if clock_offset is not None else timeline.created + first_wait - received
    )
    for stamp in (created, started, updated):
        if stamp is not None:
            offset = offset.merge(stamp[0], received)
    looked_at = offset.server(received)
    sighting = None
    if activity.state is ActivityState.PROCESSING:
        sighting = Sighting(updated[0] if updated else looked_at, activity.percent_done)
    seen = timeline.seen(
        looked_at=looked_at, started=started[0] if started else None, sighting=sighting
    )
    return seen, offset
