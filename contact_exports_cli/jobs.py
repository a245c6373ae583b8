"""Jobs as the command line shows them: the record the workers keep in Redis, joined with the
Celery state of the task that carries the job's id.

The record is the authority (it outlives the Celery result and exists whoever sent the job);
the Celery state adds live progress. They share an id when the job was sent with its job id
as task id (this command line and ``contact_exports_client`` do) or without a job id at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult

from contact_exports_cli.exceptions import ExportFailedError, NotFinishedError, NotFoundError
from contact_exports_client import PROGRESS, snapshot
from contact_exports_client.keys import JOB_KEY_PREFIX, job_id_of
from workers.state.jobs import JobState, JobStore

#: Record states of a job still on its way.
IN_FLIGHT = frozenset({JobState.QUEUED, JobState.CREATING, JobState.POLLING, JobState.DOWNLOADING})
#: Job records are hashes; the keys beside them (uploads, leases) are other types.
RECORD_TYPE = "hash"
#: Keys asked for per SCAN round trip while looking for job records.
SCAN_COUNT = 500


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
    keys = list(client.scan_iter(match=f"{JOB_KEY_PREFIX}*", count=SCAN_COUNT, _type=RECORD_TYPE))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    jobs = []
    for key, raw in zip(keys, pipe.execute(), strict=True):
        record = {_text(k): _text(v) for k, v in raw.items()}
        job_id = job_id_of(_text(key))
        if job_id is not None and record.get("state") in IN_FLIGHT:
            jobs.append((float(record.get("created_at") or 0), job_id, record))
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
