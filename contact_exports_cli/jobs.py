"""Jobs as the command line shows them: the record the workers keep in Redis, joined with the
Celery state of the task that carries the job's id.

The record is the authority (it outlives the Celery result and exists whoever sent the job);
the Celery state adds live progress. They share an id when the job was sent with its job id
as task id (this command line and ``contact_exports_client`` do) or without a job id at all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult

from contact_exports_cli.exceptions import (
    ExportFailedError,
    InvalidUsageError,
    NotFinishedError,
    NotFoundError,
)
from contact_exports_client import PROGRESS, snapshot
from workers.state.jobs import CANCELLED_AT, JobState, JobStore

#: Record states of a job still on its way.
IN_FLIGHT = frozenset({JobState.QUEUED, JobState.CREATING, JobState.POLLING, JobState.DOWNLOADING})


@dataclass(frozen=True)
class CeleryState:
    state: str
    #: JSON-ready: the progress dict, the result dict, or the error's type and message.
    info: Any

    @property
    def known(self) -> bool:
        """PENDING is also what Celery says of an id it never heard of."""
        return self.state != "PENDING"


def celery_state(app: Celery, task_id: str) -> CeleryState:
    state, info = snapshot(AsyncResult(task_id, app=app))
    if isinstance(info, BaseException):
        info = {"error_type": type(info).__name__, "error_message": str(info)}
    elif info is not None and not isinstance(info, dict | list | str | int | float | bool):
        info = repr(info)
    return CeleryState(state, info)


@dataclass(frozen=True)
class JobView:
    job_id: str
    record: dict[str, str]
    celery: CeleryState

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = dict(self.record)
        for name in ("kwargs", "result", "seal"):
            if name in record:
                record[name] = json.loads(record[name])
        return {
            "job_id": self.job_id,
            "state": self.record.get("state"),
            "record": record,
            "celery": {"state": self.celery.state, "info": self.celery.info},
        }


def look_up(store: JobStore, app: Celery, job_id: str) -> JobView:
    view = JobView(job_id, store.record(job_id), celery_state(app, job_id))
    if not view.record and not view.celery.known:
        raise NotFoundError(
            f"no job {job_id!r}: no record in Redis and no Celery result under that id",
            hint="job records expire 14 days after their last change",
        )
    return view


def outcome(view: JobView) -> dict[str, Any]:
    """The result dict of a finished job, or the error that says why there is none.

    A record still in flight wins over a Celery failure under the same id: that failure is the
    run before a rerun.
    """
    if view.celery.state == "SUCCESS" and isinstance(view.celery.info, dict):
        return view.celery.info
    stored = view.record.get("result")
    if stored:
        result: dict[str, Any] = json.loads(stored)
        return result
    state = view.record.get("state")
    if state not in IN_FLIGHT:
        if view.celery.state == "FAILURE" and isinstance(view.celery.info, dict):
            raise ExportFailedError(
                str(view.celery.info.get("error_type")),
                str(view.celery.info.get("error_message")),
                job_id=view.job_id,
            )
        if state == JobState.FAILED:
            raise ExportFailedError(
                view.record.get("error_type", "unknown error"),
                view.record.get("error_message", ""),
                job_id=view.job_id,
            )
    stage = progress_of(view.celery).get("stage") or state or "queued"
    raise NotFinishedError(
        f"job {view.job_id} has not finished (stage: {stage})",
        hint=f"wait for it: contact-exports result {view.job_id} --wait",
    )


def progress_of(celery: CeleryState) -> dict[str, Any]:
    return celery.info if celery.state == PROGRESS and isinstance(celery.info, dict) else {}


def in_flight(client: redis.Redis, app: Celery, limit: int) -> list[dict[str, Any]]:
    """Jobs whose record says they are on their way, oldest first, with their live progress."""
    jobs = [
        (float(record.get("created_at") or 0), job_id, record)
        for job_id, record in JobStore(client).records()
        if record.get("state") in IN_FLIGHT and CANCELLED_AT not in record
    ]
    jobs.sort()
    rows = []
    for _, job_id, record in jobs[:limit]:
        progress = progress_of(celery_state(app, job_id))
        rows.append(
            {
                "job_id": job_id,
                "account": record.get("account", ""),
                "state": record.get("state", ""),
                "stage": progress.get("stage") or record.get("state", ""),
                "percent_done": int(progress.get("percent_done") or 0),
                "bytes": int(progress.get("bytes") or 0),
                "attempts": sum(int(v) for k, v in record.items() if k.startswith("attempts:")),
                "created_at": float(record.get("created_at") or 0),
                "updated_at": float(record.get("updated_at") or 0),
            }
        )
    return rows


@dataclass(frozen=True)
class JobFilter:
    """Which jobs ``list_jobs`` shows: any of ``states``, of ``account``, begun since ``since``
    (a Unix time); None means any."""

    states: frozenset[str] | None = None
    account: str | None = None
    since: float | None = None

    def keeps(self, row: dict[str, Any]) -> bool:
        return (
            (self.states is None or row["state"] in self.states)
            and (self.account is None or row["account"] == self.account)
            and (self.since is None or row["created_at"] >= self.since)
        )


#: ``--since`` durations: a number and its unit.
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_time(text: str, now: float) -> float:
    """``--since``: a duration back from ``now`` (``30m``, ``2h``, ``7d``) or an ISO 8601 time
    (UTC unless it says otherwise), as a Unix time."""
    duration = DURATION.match(text.strip())
    if duration:
        return now - float(duration.group(1)) * UNIT_SECONDS[duration.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidUsageError(
            f"--since {text!r}: give a duration (30m, 2h, 7d) or an ISO 8601 time "
            "(2026-12-04T09:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def list_jobs(client: redis.Redis, wanted: JobFilter, limit: int) -> list[dict[str, Any]]:
    """Jobs as their records tell them, newest first: state, account, format, key, rows, when."""
    rows = [job_row(job_id, record) for job_id, record in JobStore(client).records()]
    rows = [row for row in rows if wanted.keeps(row)]
    rows.sort(key=lambda row: row["created_at"], reverse=True)
    return rows[:limit]


def job_row(job_id: str, record: dict[str, str]) -> dict[str, Any]:
    try:
        result = json.loads(record.get("result") or "{}")
        kwargs = json.loads(record.get("kwargs") or "{}")
    except ValueError:
        result, kwargs = {}, {}
    created = record.get("created_at") or record.get("submitted_at") or 0
    return {
        "job_id": job_id,
        # A step racing a cancel may have written its own state after it; the mark stands.
        "state": "cancelled" if CANCELLED_AT in record else record.get("state", ""),
        "account": record.get("account") or kwargs.get("account") or "default",
        "format": kwargs.get("format") or "csv",
        "bucket": record.get("bucket", ""),
        "key": record.get("key", ""),
        "rows": result.get("rows"),
        "created_at": float(created),
        "updated_at": float(record.get("updated_at") or created),
    }
