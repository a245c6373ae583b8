"""Export activities and their state over time.

State is derived on every read from the clock and the render job instead of
being advanced by a timer thread: there is nothing to drift or race, and an
activity is ``completed`` exactly when both its processing time has elapsed
and its file is fully rendered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sandbox.spool import RenderJob, RenderState

STARTUP_FRACTION = 0.1
"""Share of the processing time an activity stays ``initialized`` before ``processing``."""

MAX_PROCESSING_PERCENT = 99
"""percent_done reaches 100 only together with a terminal state, never while processing."""


class ActivityState(StrEnum):
    INITIALIZED = "initialized"
    PROCESSING = "processing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


TERMINAL_STATES = frozenset(
    {
        ActivityState.COMPLETED,
        ActivityState.CANCELLED,
        ActivityState.FAILED,
        ActivityState.TIMED_OUT,
    }
)

FAULT_OUTCOME_ERRORS: dict[ActivityState, str] = {
    ActivityState.FAILED: "The export failed because of an internal error (injected fault)",
    ActivityState.CANCELLED: "The export activity was cancelled (injected fault)",
    ActivityState.TIMED_OUT: "The export timed out before completing (injected fault)",
}


#: How percent_done rises while processing: with time (``linear``), in quarters (``steps``),
#: or not at all until the end (``late``: 0 until done, as some activities report).
CURVES = ("linear", "steps", "late")
RESOLUTIONS = ("millis", "seconds")


def iso_timestamp(moment: datetime, resolution: str = "millis") -> str:
    """The swagger's example style: ``2016-01-23T13:48:44.108Z``; with ``seconds``, the
    milliseconds are always ``000`` (the time truncated to the second)."""
    millis = moment.microsecond // 1000 if resolution == "millis" else 0
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def curved(fraction: float, curve: str) -> float:
    """The reported share of the work done when ``fraction`` of it is."""
    if curve == "steps":
        return int(fraction * 4) / 4
    if curve == "late":
        return 0.0
    return fraction


@dataclass(frozen=True)
class ActivityView:
    """An activity as seen at one instant; times are monotonic-clock seconds."""

    state: ActivityState
    percent_done: int
    items_total: int
    items_completed: int
    errors: tuple[str, ...]
    started_at: float | None
    completed_at: float | None
    updated_at: float


@dataclass(frozen=True)
class Activity:
    """One export activity; immutable, its progress comes from the clock and ``job``."""

    activity_id: str
    file_export_id: str
    seq: int
    created_wall: datetime
    created_mono: float
    processing_seconds: float
    outcome: ActivityState
    errors: tuple[str, ...]
    job: RenderJob | None
    candidates: int
    progress_curve: str = "linear"
    timestamp_resolution: str = "millis"

    def view(self, now: float) -> ActivityView:
        ps = max(0.0, self.processing_seconds)
        elapsed = max(0.0, now - self.created_mono)
        time_fraction = 1.0 if ps == 0 else min(1.0, elapsed / ps)
        outcome, errors, work_fraction = self.outcome, self.errors, 1.0
        done_at: float | None = self.created_mono + ps
        total = self.candidates
        job = self.job
        if job is not None:
            work_fraction = job.fraction()
            if job.info is not None:
                total = job.info.rows
            if job.finished_at is None:
                done_at = None
            else:
                done_at = max(self.created_mono + ps, job.finished_at)
                if job.state is RenderState.FAILED:
                    outcome, errors = ActivityState.FAILED, (job.error or "Rendering failed",)
        started = self.created_mono + ps * STARTUP_FRACTION
        if done_at is not None and now >= done_at:
            completed = total if outcome is ActivityState.COMPLETED else 0
            return ActivityView(outcome, 100, total, completed, errors, started, done_at, done_at)
        if now < started:
            return ActivityView(
                ActivityState.INITIALIZED, 0, total, 0, (), None, None, self.created_mono
            )
        done = curved(min(time_fraction, work_fraction), self.progress_curve)
        percent = min(MAX_PROCESSING_PERCENT, int(done * 100))
        return ActivityView(
            ActivityState.PROCESSING, percent, total, total * percent // 100, (), started, None, now
        )

    def initial_view(self) -> ActivityView:
        """What the 201 reports: always ``initialized``, even when the work is instant."""
        return ActivityView(
            ActivityState.INITIALIZED, 0, self.candidates, 0, (), None, None, self.created_mono
        )

    def wall(self, mono: float) -> str:
        moment = self.created_wall + timedelta(seconds=mono - self.created_mono)
        return iso_timestamp(moment, self.timestamp_resolution)

    def to_json(self, view: ActivityView) -> dict[str, Any]:
        body: dict[str, Any] = {"activity_id": self.activity_id, "state": view.state.value}
        if view.started_at is not None:
            body["started_at"] = self.wall(view.started_at)
        if view.completed_at is not None:
            body["completed_at"] = self.wall(view.completed_at)
        body.update(
            {
                "created_at": iso_timestamp(self.created_wall, self.timestamp_resolution),
                "updated_at": self.wall(view.updated_at),
                "percent_done": view.percent_done,
                "activity_errors": list(view.errors),
                "status": {
                    "items_total_count": view.items_total,
                    "items_completed_count": view.items_completed,
                },
                "_links": {
                    "self": {"href": f"/v3/activities/{self.activity_id}"},
                    "results": {"href": f"/v3/contact_exports/{self.file_export_id}"},
                },
            }
        )
        return body


ActivityFactory = Callable[[int, float], Activity]
"""Builds an activity from its sequence number and creation time (monotonic)."""


class ActivityStore:
    """All activities of the sandbox's single account, indexed by both of their ids."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Activity] = {}
        self._by_file_id: dict[str, Activity] = {}
        self._seq = 0

    def create_if_room(self, max_queued: int, build: ActivityFactory) -> Activity | None:
        """Create an activity unless ``max_queued`` unfinished ones exist (0 = no limit).

        Checking and inserting under one lock keeps the limit exact under concurrency,
        and a refused request never starts a render.
        """
        with self._lock:
            now = self.clock()
            if max_queued > 0 and self._unfinished(now) >= max_queued:
                return None
            self._seq += 1
            activity = build(self._seq, now)
            self._by_id[activity.activity_id] = activity
            self._by_file_id[activity.file_export_id] = activity
            return activity

    def _unfinished(self, now: float) -> int:
        return sum(1 for a in self._by_id.values() if a.view(now).state not in TERMINAL_STATES)

    def get(self, activity_id: str) -> Activity | None:
        with self._lock:
            return self._by_id.get(activity_id.lower())

    def by_file_id(self, file_export_id: str) -> Activity | None:
        with self._lock:
            return self._by_file_id.get(file_export_id.lower())

    def newest_first(
        self, state: ActivityState | None, limit: int, before_seq: int | None
    ) -> tuple[list[tuple[Activity, ActivityView]], bool]:
        """One page of activities and whether more follow."""
        with self._lock:
            ordered = sorted(self._by_id.values(), key=lambda a: a.seq, reverse=True)
        now = self.clock()
        page: list[tuple[Activity, ActivityView]] = []
        for activity in ordered:
            if before_seq is not None and activity.seq >= before_seq:
                continue
            view = activity.view(now)
            if state is not None and view.state is not state:
                continue
            if len(page) == limit:
                return page, True
            page.append((activity, view))
        return page, False

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._by_file_id.clear()
