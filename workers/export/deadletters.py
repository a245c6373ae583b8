"""Jobs that failed for good: list them, and run one again under the same job_id."""

from __future__ import annotations

import json
from typing import Any

from contact_exports_client.client import EXPORT_TASK, QUEUE
from contact_exports_client.ledger import SEAL_FIELD
from contact_exports_client.signing import Seals
from workers.services import Sender
from workers.state.jobs import JobStore


def list_failed(store: JobStore, limit: int = 100) -> list[dict[str, str]]:
    """Dead letters, newest first: job_id, state, failed_step, error_type, error_message,
    attempts per step and timestamps (seconds since the epoch)."""
    return [
        {k: v for k, v in record.items() if k != "kwargs"} for record in store.dead_letters(limit)
    ]


def rerun(store: JobStore, sender: Sender, job_id: str, seals: Seals | None = None) -> Any:
    """Enqueue the failed job again with its original request; it gets a new activity.
    Returns what the sender returns (a Celery app: the AsyncResult of the new run).

    With ``seals`` (messages are signed), the stored request must carry the seal of a trusted
    key, or PermissionError: the sender would sign whatever Redis holds.
    """
    checked: str | None = None
    if seals is not None:
        record = store.record(job_id)
        checked = record.get("kwargs", "")
        if not seals.valid(checked, record.get(SEAL_FIELD)):
            raise PermissionError(
                f"job {job_id}: its stored request carries no seal of a trusted key"
            )
    kwargs = store.reopen(job_id)
    if checked is not None:
        kwargs = json.loads(checked)  # what was checked is what is sent
    return sender.send_task(EXPORT_TASK, kwargs=kwargs, queue=QUEUE)
