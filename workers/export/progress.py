"""What callers see: PROGRESS on the id they hold, and the result dict (docs/contract.md §2).

PROGRESS is stored straight into the result backend at the caller's id, with no task request
attached, so the caller's id never carries a task name, arguments or the internal job record
(docs/contract.md §6).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from contact_exports_client.client import PROGRESS
from workers.export.job import Job

if TYPE_CHECKING:
    from workers.s3.storage import StoredObject
    from workers.services import ResultStore
    from workers.transfer import TransferSummary


def utc_now() -> str:
    return iso_utc(datetime.now(UTC))


def iso_utc(moment: datetime) -> str:
    """``moment`` as the contract writes times: ``2026-11-26T04:45:16.577Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report(
    results: ResultStore,
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
    results.store_result(job.result_id, meta, PROGRESS)


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
