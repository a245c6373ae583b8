"""An export job as it travels between the chain's steps: typed here, plain JSON on the wire.

The message between two steps carries ``Job.to_dict()``; its shape is unchanged from earlier
versions of the worker (``activities`` as a list of objects), so a message written by an older
worker still loads, and fields this version no longer keeps are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from workers.polling import Timeline


@dataclass(frozen=True)
class ActivityRef:
    """One Constant Contact activity of a job, and what the job has learnt of it so far."""

    activity_id: str
    self_href: str
    results_href: str | None = None
    completed: bool = False
    #: What it reported while unfinished, on the server's clock (``workers.polling``).
    timeline: Timeline | None = None

    def finished(self, results_href: str) -> ActivityRef:
        """This activity seen completed, with the link to its file."""
        return replace(self, completed=True, results_href=results_href, timeline=None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "activity_id": self.activity_id,
            "self_href": self.self_href,
            "completed": self.completed,
        }
        if self.results_href:
            data["results_href"] = self.results_href
        if self.timeline is not None:
            data["timeline"] = self.timeline.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActivityRef:
        timeline = data.get("timeline")
        return cls(
            activity_id=str(data["activity_id"]),
            self_href=str(data["self_href"]),
            results_href=data.get("results_href") or None,
            completed=bool(data.get("completed", False)),
            timeline=Timeline.from_json(timeline) if timeline else None,
        )


@dataclass
class Job:
    job_id: str
    #: The Celery result id the caller holds: PROGRESS and the outcome are stored there.
    result_id: str
    account: str
    #: The API bodies to POST, one per activity: more than 500 contact ids take several.
    requests: list[dict[str, Any]]
    bucket: str
    key: str
    #: Epoch seconds after which the export fails with ExportTimedOut.
    deadline: float
    started_at: str
    unknown_fields: list[str] = field(default_factory=list)
    #: One per request, in request order, once the activities exist.
    activities: list[ActivityRef] = field(default_factory=list)
    #: Worker time (epoch seconds) of the next poll. A longer wait than a countdown may be is
    #: slept in parts, and a poll task that wakes before this goes back to sleep without a
    #: request.
    poll_at: float | None = None
    #: The API server's clock minus ours, a lower bound (workers.polling.ClockOffset).
    clock_offset: float | None = None
    #: Where the outcome is POSTed when the job ends (see workers.webhooks).
    notify_url: str | None = None
    #: How the object is stored: encryption, storage class, tags (workers.s3.objectoptions).
    object_options: dict[str, Any] = field(default_factory=dict)
    #: The stored format (workers.export.formats).
    format: str = "csv"

    @property
    def activity_id(self) -> str | None:
        """The first activity's id: what callers see while an export runs."""
        return self.activities[0].activity_id if self.activities else None

    @property
    def activity_ids(self) -> list[str]:
        return [activity.activity_id for activity in self.activities]

    @property
    def done(self) -> bool:
        """Every activity was seen completed."""
        return bool(self.activities) and all(a.completed for a in self.activities)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["activities"] = [activity.to_json() for activity in self.activities]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """The job a message carries; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in data.items() if name in known}
        values["activities"] = [ActivityRef.from_json(a) for a in data.get("activities") or []]
        return cls(**values)
