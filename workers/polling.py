"""When to look at an export activity again.

Polls spend the application's shared budget of 4 requests a second, so fewer is better — but a
poll that comes late delays the download. The aim: see each activity completed within
``max(MIN_SLACK_SECONDS, SLACK_FRACTION x its duration)`` of its completion, in as few polls as
the activity's own reports allow.

Everything is reckoned on the server's clock. Constant Contact stamps an activity with
``created_at``, ``started_at`` and ``updated_at``; paces computed between those stamps do not
depend on how far the worker's clock is from the server's, and ``ClockOffset`` turns a target
time on the server's clock into a countdown on the worker's. Stamps in whole seconds (also
written ``…:44.000Z``) are too coarse to time a sighting by; the worker's clock times those
(``Timeline``).

While an activity reports no progress there is nothing to predict from, and the wait grows in
proportion to its age (``backoff``): one still pending after a minute is unlikely to finish in
the next second, and a long one shows progress after a few polls. Once ``percent_done`` rises,
``completion_window`` keeps every completion time consistent with what the activity reported,
and ``next_look`` polls just after the latest of them or, when they are spread too widely to be
sure, at a point early enough to be in time if the activity is already done then and
informative if it is not. A percentage reported in coarse steps (``quantum``) counts for the
whole step it may hide.

What the activity reports cannot always meet both halves of the aim. One that reports no
progress until it is done can only be waited for in multiples of its age, which is either
late or costly (RUNNING_AGE_FACTOR); one in quarters leaves windows a quarter wide, whose
probing costs polls rather than latency. A duration hint, how long such activities usually
take (``expected_seconds``, see ``hinted_window``), gives both something to go by.

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
#: The same for an activity processing at 0 % (see ``quiet_factor``). An activity that never
#: reports progress can only be waited for in multiples of its age: each poll sees it 1.8 to
#: 2.2 times as old as the one before, so it is seen at most 1.2 times its age at the poll
#: before late (and at most the cap), in about log2(duration / age when processing) polls:
#: 4 for 5 s, 6 for 60 s, 8 for 10 minutes in the sandbox. Halving the factor halves that
#: bound and about doubles the polls; no factor meets both 10 % and 6 polls (docs/performance).
#: A duration hint (``hinted_window``) does.
RUNNING_AGE_FACTOR = 1.0
#: A predicted wait is at most this multiple of the activity's age, and after a single sighting
#: of progress at most LONE_TRUST_FACTOR times: progress that speeds up (which a single
#: sighting cannot show) must not send the next poll far past the completion.
TRUST_FACTOR = 10.0
LONE_TRUST_FACTOR = 2.0
#: The resolution assumed for timestamps that all fall on whole seconds (see ``_resolution``).
WHOLE_SECOND = 1.0
#: The longest a server's answer is assumed to take to reach the worker: a sighting timed by
#: the worker's clock (see ``Timeline``) happened at most this long before it was received.
RESPONSE_SECONDS = 0.25
#: The steps a server may report progress in, coarsest first, each with how many different
#: percentages, all multiples of it, it takes to believe in it (see ``quantum``). One for
#: quarters: a lone 25 read as [25, 26) predicts up to twice too late, while a truncating
#: server reads 25, 50 or 75 only 3 times in 100 (and then loses a probe). More for the rest:
#: a truncating server hits multiples of 20 or 10 often, and more often still in pairs, since a
#: probe placed from a reading p tends to come when the progress is about 2p or 3p.
COARSE_STEPS = ((25, 1), (20, 3), (10, 3), (5, 4))
#: With a duration hint E, the completion is looked for from HINT_LOW x E to HINT_HIGH x E
#: after the creation (``hinted_window``). The 5 polls after the first, each a slack (9 %)
#: after the one before from HINT_LOW x E on, reach about 1.5 x HINT_LOW x E: a hint from 0.83
#: to 1.25 times the real duration meets both 6 polls and 10 %, on any curve. A hint further
#: below is still met in time, in more polls, up to HINT_HIGH; one further above comes late by
#: about HINT_LOW x E - D. No placement covers ±30 % in 6 polls: that span (1.86 x) takes 8.
HINT_LOW = 0.8
HINT_HIGH = 2.0
#: Sightings kept per activity: the first (the longest baseline) and the latest ones.
MAX_SIGHTINGS = 8


@dataclass(frozen=True)
class Sighting:
    """One report while the activity was processing: when (epoch seconds, server clock: its
    ``updated_at``, or the worker's clock for a ``clocked`` timeline) and ``percent_done``, an
    integer, so the true progress lies in [percent, percent + quantum), 1 unless the server
    reports in steps (see ``quantum``)."""

    at: float
    percent: int


@dataclass(frozen=True)
class Timeline:
    """What the server said about one activity, on the server's clock.

    ``looked_at`` is when the latest look found it unfinished: completion comes after that,
    whether or not it reported progress then. ``resolution`` is how coarse the server's
    timestamps are (0.001 for milliseconds, 1 for whole seconds).

    With whole-second stamps (``clocked``) a sighting is timed by the worker's own clock instead
    of by ``updated_at``: a second's truncation on every sighting would leave a pace good to a
    few percent only after minutes, while the worker's clock times two looks to within a round
    trip. Such times are on the scale of the clock offset learnt so far (``basis``); as that
    offset rises, ``record_look`` moves them with it, so that they stay comparable with one
    another and with the polls planned from them. ``created_at`` and ``started_at`` stay
    server stamps, which the offset may put up to a resolution off: the windows allow for it.
    """

    created: float
    looked_at: float
    started: float | None = None
    sightings: tuple[Sighting, ...] = ()
    resolution: float = 0.001
    basis: float | None = None

    @property
    def clocked(self) -> bool:
        """Whether sightings are timed by the worker's clock (whole-second stamps)."""
        return self.resolution >= WHOLE_SECOND

    @property
    def pad(self) -> float:
        """How far a server stamp may be off the scale of a clocked timeline's sightings."""
        return self.resolution if self.clocked else 0.0

    @property
    def spread(self) -> float:
        """How far a sighting's time may be from the moment its percent was true."""
        return RESPONSE_SECONDS / 2 if self.clocked else self.resolution

    def reckoned(self, offset: float) -> Timeline:
        """This timeline with its worker-timed entries on the scale of ``offset``."""
        if not self.clocked:
            return replace(self, basis=None)
        if self.basis is None:
            return replace(self, basis=offset)
        shift = offset - self.basis
        return replace(
            self,
            looked_at=self.looked_at + shift,
            sightings=tuple(Sighting(s.at + shift, s.percent) for s in self.sightings),
            basis=offset,
        )

    def seen(
        self, *, looked_at: float, started: float | None, sighting: Sighting | None
    ) -> Timeline:
        """This timeline after one more look that found the activity unfinished."""
        sightings = self.sightings
        if sighting is not None and sighting.at >= self.created - self.pad:
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
        data = {
            "created": self.created,
            "looked_at": self.looked_at,
            "started": self.started,
            "sightings": [[s.at, s.percent] for s in self.sightings],
            "resolution": self.resolution,
        }
        if self.basis is not None:  # only a clocked timeline has one: the job's shape is kept
            data["basis"] = self.basis
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timeline:
        return cls(
            created=float(data["created"]),
            looked_at=float(data["looked_at"]),
            started=float(data["started"]) if data.get("started") is not None else None,
            sightings=tuple(Sighting(float(at), int(p)) for at, p in data.get("sightings", [])),
            resolution=float(data.get("resolution", 0.001)),
            basis=float(data["basis"]) if data.get("basis") is not None else None,
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
    ``T``, so each sighting (t, p) says p <= 100 (t - s) / (T - s) < p + q, where the quantum
    ``q`` is 1 or the step of a server that reports in steps (``quantum``). Which ``s``? A
    server may count progress from creation (the sandbox does) or from ``started_at`` (after
    waiting in a queue), or from anywhere in between; so ``s`` may be any time from
    ``created_at`` to ``started_at`` (to the first sighting of progress if there is none). One
    sighting then leaves a wide window, from "counted from started_at" to "counted from
    created_at"; a second one, further on, narrows it to a few percent. Assuming one of the two
    ends would save a poll, but if the guess is wrong the poll comes late — by far, for a queue
    delay before a short run. If no steady pace fits at all (progress sped up or slowed down),
    the two latest distinct sightings give the window of the current pace.
    """
    pad = timeline.pad  # clocked sightings and server stamps may be this far apart
    sightings = [s for s in timeline.sightings if s.at >= timeline.created - pad]
    progress = [s for s in sightings if s.percent > 0]
    if not progress:
        return None
    latest_start = progress[0].at
    if timeline.started is not None and timeline.created <= timeline.started < latest_start:
        latest_start = min(latest_start, timeline.started + pad)
    window = _linear_window(sightings, timeline.created - pad, latest_start, timeline)
    return window or _local_window(sightings, timeline)


def _linear_window(
    sightings: Sequence[Sighting], start_lo: float, start_hi: float, timeline: Timeline
) -> Window | None:
    """Completion times consistent with a steady pace from some start in [start_lo, start_hi].

    For a start ``s``, each sighting bounds the completion between two values linear in ``s``;
    the extremes over the polygon these lines enclose lie at its corners, so it is enough to
    try the ends of the range and every point where two of the lines cross.
    """
    r = timeline.spread
    step = quantum(sightings)
    uppers = [
        _Line(1 - 100 / s.percent, 100 * (s.at + r) / s.percent) for s in sightings if s.percent
    ]
    tops = [min(100, s.percent + step) for s in sightings]
    lowers = [
        _Line(1 - 100 / top, 100 * (s.at - r) / top) for s, top in zip(sightings, tops, strict=True)
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
    r = timeline.spread
    step = quantum(sightings)
    last = sightings[-1]
    before = next((s for s in reversed(sightings) if s.percent < last.percent), None)
    if before is None or last.at - before.at <= 2 * r:
        return Window(timeline.looked_at, float("inf"))
    fastest = (last.percent + step - before.percent) / (last.at - before.at - 2 * r)
    slowest = (last.percent - before.percent - step) / (last.at - before.at + 2 * r)
    earliest = last.at - r + (100 - step - last.percent) / fastest
    latest = last.at + r + (100 - last.percent) / slowest if slowest > 0 else float("inf")
    return Window(max(timeline.looked_at, earliest), max(timeline.looked_at, latest))


def quantum(sightings: Sequence[Sighting]) -> int:
    """How far the true progress may be above a reported ``percent_done``: 1 for a server that
    truncates its percentage, more for one that reports it in steps (quarters, fifths, tenths).

    Progress in steps that is read as [p, p+1) predicts the completion as if the step had just
    been reached, up to twice too late for quarters. So when every percentage seen is a
    multiple of one of COARSE_STEPS (and there are enough of them to believe it), a reading p
    stands for [p, p + step). On a server that does truncate, that takes a reading that happens
    to be round for less than it is worth until one that is not comes along: it widens the
    window, which may cost a probe but not lateness.
    """
    positive = {s.percent for s in sightings if s.percent > 0}
    for step, needed in COARSE_STEPS:
        if len(positive) >= needed and all(p % step == 0 for p in positive):
            return step
    return 1


def slack(created: float, earliest: float) -> float:
    """How late a poll may see an activity that completes at ``earliest`` or later."""
    return max(MIN_SLACK_SECONDS, SLACK_FRACTION * (earliest - created))


def next_look(
    timeline: Timeline,
    now: float,
    *,
    rng: random.Random | None = None,
    expected_seconds: float | None = None,
) -> float | None:
    """Server time at which to poll again, or None while there is nothing to go by.

    If a poll just after the latest possible completion is late by no more than the slack, that
    is the poll (a little later still, within the slack, to spread exports created together).
    Otherwise the poll comes up to a slack after the earliest possible completion: if the
    activity is done by then, it is seen in time; if not, the new sighting narrows the window.

    ``expected_seconds`` is how long activities like this one usually take, from creation to
    completion (None if unknown; see ``hinted_window``). With it there is something to go by
    before any progress, and fewer probes are spent on completions it makes unlikely.
    """
    window = completion_window(timeline)
    hinted = hinted_window(window, timeline, expected_seconds)
    if hinted is None:
        return None
    allowed = slack(timeline.created, hinted.earliest)
    draw = (rng or random).random()
    if hinted.latest - hinted.earliest <= allowed:
        spare = hinted.earliest + allowed - hinted.latest
        target = hinted.latest + MARGIN_SECONDS + SPREAD_FRACTION * spare * draw
    else:
        target = hinted.earliest + allowed * (1 - PROBE_SPREAD_FRACTION * draw)
    if hinted == window:
        # Only a prediction from the activity's own progress is held to its age; the hint's
        # point is to wait as long as such activities take.
        progress = sum(1 for s in timeline.sightings if s.percent > 0)
        trust = TRUST_FACTOR if progress > 1 else LONE_TRUST_FACTOR
        target = min(target, now + trust * max(now - timeline.created, 0.0))
    return max(now, target)


def hinted_window(
    window: Window | None, timeline: Timeline, expected_seconds: float | None
) -> Window | None:
    """The completion window narrowed to what a duration hint makes likely.

    A hint E (the typical duration of recent activities, creation to completion) says the
    completion lies within [HINT_LOW x E, HINT_HIGH x E] of the creation. Where that range
    overlaps the window, the window is cut to it: no probe is spent on completions before
    HINT_LOW x E, which is what lets an activity that reports no progress (or progress in
    coarse steps) be seen in time in few polls. Once the activity has outlived the range, or the
    range and the window do not overlap, the hint is wrong and the window (or, without one, the
    backoff) rules again.

    The cost of a wrong hint: an activity that completes before HINT_LOW x E is seen at the
    first probe, up to about HINT_LOW x E late; one that takes longer than HINT_HIGH x E is
    probed every slack up to then, in time but in more polls.
    """
    if expected_seconds is None or expected_seconds <= 0:
        return window
    lo = timeline.created + HINT_LOW * expected_seconds
    hi = timeline.created + HINT_HIGH * expected_seconds
    bounds = window or Window(timeline.looked_at, float("inf"))
    narrowed = Window(max(bounds.earliest, lo), min(bounds.latest, hi))
    return narrowed if narrowed.earliest < narrowed.latest else window


def backoff(
    age: float,
    *,
    floor: float,
    cap: float,
    rng: random.Random | None = None,
    factor: float = AGE_FACTOR,
) -> float:
    """Seconds to wait while an activity shows no progress: in proportion to its age.

    The wait grows with how long the activity has run rather than with how often we looked, so
    a long activity reaches its first sighting of progress in a few polls and a short one is
    seen soon; the cap bounds how late an activity that never reports progress is seen.
    ``factor`` is the wait as a multiple of the age (AGE_FACTOR, or RUNNING_AGE_FACTOR for an
    activity that is processing but reports no progress).
    """
    draw = (rng or random).uniform(*BACKOFF_JITTER)
    return min(cap, max(floor, factor * max(age, 0.0) * draw))


def quiet_factor(timeline: Timeline) -> float:
    """The backoff factor for an activity that reports no progress.

    While it is ``initialized`` the wait is AGE_FACTOR times its age: the work has not begun,
    and a long activity must reach its first sighting of progress in few polls. Once it is
    processing at 0 %, the work is under way and may end at any moment without ever reporting
    progress (as some activities do, and one in steps does for its first step), so the wait is
    RUNNING_AGE_FACTOR times its age.
    """
    running = timeline.started is not None or bool(timeline.sightings)
    return RUNNING_AGE_FACTOR if running else AGE_FACTOR


def next_poll_at(
    timelines: Sequence[Timeline],
    now: float,
    *,
    floor: float,
    cap: float,
    rng: random.Random | None = None,
    expected_seconds: float | None = None,
    hints: Sequence[float | None] | None = None,
) -> float:
    """Server time of a job's next poll, given its unfinished activities (polled together).

    The job is done when its last activity is, so the latest of their targets wins, at least
    ``floor`` from now. Only a wait without progress is capped: a predicted one may be longer
    than a countdown may be (see the broker's visibility timeout), and the caller splits it.
    ``expected_seconds`` (see ``next_look``) holds for every activity; ``hints``, one per
    timeline, for each its own: activities of one job are created at different times from
    different requests.
    """
    per_timeline = list(hints) if hints is not None else [expected_seconds] * len(timelines)
    targets = [now + floor]
    for timeline, hint in zip(timelines, per_timeline, strict=True):
        target = next_look(timeline, now, rng=rng, expected_seconds=hint)
        if target is None:
            age = now - timeline.created
            factor = quiet_factor(timeline)
            target = now + backoff(age, floor=floor, cap=cap, rng=rng, factor=factor)
        targets.append(target)
    return max(targets)


@dataclass(frozen=True)
class ClockOffset:
    """The server's clock minus the worker's, as a lower bound learnt from server timestamps.

    A timestamp in a response was stamped before the worker received it, so
    ``stamp - received`` never exceeds the true offset; the largest such value (usually the
    ``updated_at`` of a processing activity, stamped as it answered) is the closest bound.
    Underestimating the offset only makes a poll later by that much, never early. With
    whole-second stamps that is up to a second; a ``clocked`` timeline keeps its sightings on
    the scale of this estimate, so that polls planned from them are not.
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
    ``received`` is the worker's time the answer arrived. Stamps that all fall on whole seconds
    make the timeline ``clocked`` (``_resolution``): its sightings are then timed by
    ``received`` rather than by ``updated_at``. Without a ``created_at`` to go by the
    timeline starts on our clock, at the latest moment the activity can have been created: the
    first look comes at least ``first_wait`` (POLL_INITIAL_SECONDS) after the create.
    """
    created, started, updated = (
        epoch_seconds(stamp)
        for stamp in (activity.created_at, activity.started_at, activity.updated_at)
    )
    stamps = [stamp for stamp in (created, started, updated) if stamp is not None]
    if timeline is None:
        origin = created[0] if created else received - first_wait
        resolution = WHOLE_SECOND if stamps else 0.001
        timeline = Timeline(created=origin, looked_at=origin, resolution=resolution)
    offset = ClockOffset(
        clock_offset if clock_offset is not None else timeline.created + first_wait - received
    )
    for stamp in stamps:
        offset = offset.merge(stamp[0], received)
    timeline = timeline.reckoned(offset.value)
    timeline = replace(timeline, resolution=_resolution(timeline.resolution, stamps))
    if not timeline.clocked:
        timeline = replace(timeline, basis=None)
    looked_at = offset.server(received)
    sighting = None
    if activity.state is ActivityState.PROCESSING:
        if updated and not timeline.clocked:
            sighting = Sighting(updated[0], activity.percent_done)
        else:
            sighting = Sighting(looked_at - timeline.spread, activity.percent_done)
    seen = timeline.seen(
        looked_at=looked_at, started=started[0] if started else None, sighting=sighting
    )
    return seen, offset


def _resolution(known: float, stamps: Sequence[tuple[float, float]]) -> float:
    """How coarse an activity's timestamps are, given what earlier looks found (``known``).

    ``…:44.000Z`` claims milliseconds, but a server that truncates its stamps to the second
    (the sandbox can) writes exactly that, and taking it at its word would put every sighting
    up to a second off with no room for it in the windows. A server that does stamp
    milliseconds shows a fraction on nearly every stamp (999 in 1,000), so the resolution is a
    whole second as long as every stamp seen has been a whole second, and a stamp's own from the
    first one with a fraction on.
    """
    for moment, resolution in stamps:
        known = min(known, resolution if moment % 1 else max(resolution, WHOLE_SECOND))
    return known
