"""What callers see: PROGRESS on the id they hold, and the result dict of CONTRACT.md §2."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from workers.jobs import Job

if TYPE_CHECKING:
    from celery import Task

    from workers.storage import StoredObject
    from workers.transfer import TransferSummary

#: Result state while an export runs (CONTRACT.md §2).
PROGRESS = "PROGRESS"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report(
    task: Task[Any, Any],
    job: Job,
    stage: str,
    percent_done: int = 0,
    size: int = 0,
    **extra: Any,
) -> None:
    """Publish progress on the id the caller holds, whichever step is running."""
    meta = {
        "job_id": job.job_id,
        "stage": stage,
        "percent_done": percent_done,
        "activity_id": job.activity_id,
        "bytes": size,
        **extra,
    }
    task.update_state(task_id=job.result_id, state=PROGRESS, meta=meta)


def result_of(job: Job, summary: TransferSummary, stored: StoredObject) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "account": job.account,
        "activity_id": job.activity_id,
        "bucket": stored.bucket,
        "key": stored.key,
        "uri": stored.uri,
        "bytes": summary.size,
        "rows": summary.rows,
        "columns": summary.columns,
        "sha256": summary.sha256,
        "started_at": job.started_at,
        "finished_at": utc_now(),
        "unknown_fields": job.unknown_fields,
        "activities": len(job.requests),
    }
