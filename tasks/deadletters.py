"""Jobs that failed for good: list them, and run one again under the same job_id."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.result import AsyncResult

from contact_exports_client import EXPORT_TASK, QUEUE
from workers.jobs import JobStore


def list_failed(store: JobStore, limit: int = 100) -> list[dict[str, str]]:
    """Dead letters, newest first: job_id, state, failed_step, error_type, error_message,
    attempts per step and timestamps (seconds since the epoch)."""
    return [
        {k: v for k, v in record.items() if k != "kwargs"} for record in store.dead_letters(limit)
    ]


def rerun(store: JobStore, app: Celery, job_id: str) -> AsyncResult[Any]:
    """Enqueue the failed job again with its original request; it gets a new activity."""
    kwargs = store.reopen(job_id)
    return app.send_task(EXPORT_TASK, kwargs=kwargs, queue=QUEUE)
