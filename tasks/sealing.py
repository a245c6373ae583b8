"""Sealing an export's object after its result is recorded, as a task of its own.

The seal (``workers.objectmeta``) copies the object onto itself to add its sha256, bytes and rows
to its metadata. What that costs depends on the store, not on this worker: a multi-GiB server-side
copy on AWS, an MD5 pass over the whole file on ``rclone serve s3`` (about 1 s per 512 MiB here).
None of it changes a byte or the result, so the caller need not wait for it: ``download_csv``
records the result together with the seal it owes (``JobStore.save_result``), then asks for this
task. The owed seal stays in the job's record until the task is done, and the janitor asks again
for one whose message was lost. Until it is sealed, a repeated download rewrites the object with
identical bytes rather than adopting it, as for any unsealed object.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, Task
from celery.utils.log import get_task_logger

from contact_exports_client import QUEUE
from tasks.context import job_store, s3_client
from workers import app
from workers.backoff import exponential
from workers.exceptions import ObjectChanged, StorageError
from workers.jobs import Job
from workers.objectmeta import identity, seal
from workers.settings import get_settings
from workers.storage import StoredObject
from workers.transfer import TransferSummary

log = get_task_logger(__name__)

SEAL_TASK = "contact_exports.seal"


def seal_owed(job: Job, summary: TransferSummary, stored: StoredObject) -> dict[str, Any] | None:
    """What sealing this export's object takes, as JSON; None if the object is sealed already."""
    if stored.sealed:
        return None
    return {
        "bucket": stored.bucket,
        "key": stored.key,
        "etag": stored.etag,
        "identity": identity(job.job_id, [str(entry["activity_id"]) for entry in job.activities]),
        "size": summary.size,
        "sha256": summary.sha256,
        "rows": summary.rows,
    }


def seal_as_owed(s3: Any, owed: dict[str, Any]) -> None:
    """Seal the object as ``owed`` describes it; ObjectChanged if it is no longer that object."""
    stored = StoredObject(owed["bucket"], owed["key"], owed["size"], 0, owed.get("etag"))
    summary = TransferSummary(owed["size"], owed["sha256"], owed["rows"], [])
    seal(s3, stored, owed["identity"], summary)


def ask_for_seal(job_id: str, owed: dict[str, Any], *, sender: Celery = app) -> None:
    """Send the seal's message; the job's record keeps it owed until the task has run."""
    sender.send_task(SEAL_TASK, args=[job_id, owed], queue=QUEUE)


@app.task(bind=True, name=SEAL_TASK, max_retries=None)
def seal_export(self: Task[Any, Any], job_id: str, owed: dict[str, Any]) -> None:
    """Add the measured figures to a stored export's metadata; idempotent."""
    store = job_store()
    started = time.monotonic()
    try:
        seal_as_owed(s3_client(), owed)
    except ObjectChanged as changed:
        # A later attempt of the same job replaced the object and owes its own seal.
        log.warning("job %s: not sealed: %s", job_id, changed)
        store.sealed(job_id)
        return
    except StorageError as error:
        settings = get_settings()
        countdown = exponential(
            self.request.retries,
            initial=settings.retry_initial_seconds,
            cap=settings.retry_max_seconds,
        )
        log.warning("job %s: seal failed, again in %.1fs: %s", job_id, countdown, error)
        raise self.retry(countdown=countdown) from error
    store.sealed(job_id)
    seconds = time.monotonic() - started
    log.info("job %s: sealed in %.2f s", job_id, seconds, extra={"seal_seconds": round(seconds, 4)})
