"""Sealing an export's object after its result is recorded, as a task of its own.

The seal (``workers.s3.objectmeta``) copies the object onto itself to add its sha256, bytes and
rows to its metadata. What that costs depends on the store, not on this worker: a multi-GiB
server-side copy on AWS, an MD5 pass over the whole file on ``rclone serve s3`` (about 1 s per
512 MiB here). None of it changes a byte or the result, so the caller need not wait for it: the
download step records the result together with the seal it owes (``JobStore.save_result``),
then asks for this task. The owed seal stays in the job's record until the task is done, and the
janitor asks again for one whose message was lost. Until it is sealed, a repeated download
rewrites the object with identical bytes rather than adopting it, as for any unsealed object.

A seal that keeps failing ends by the one retry policy: after RETRY_MAX_ATTEMPTS failures, or at
once for a permanent error (access denied), it is given up and kept among the dead seals, the
job still completed (``JobStore.give_up_seal``), never retried in a loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.exceptions import KombuError

from contact_exports_client.client import QUEUE
from workers.exceptions import InvalidExportRequest, ObjectChanged, StorageError
from workers.export.formats import CSV, FORMATS
from workers.export.job import Job
from workers.export.outcome import Again
from workers.export.tasknames import SEAL_TASK
from workers.s3.objectmeta import identity, seal
from workers.s3.objectoptions import ObjectOptions
from workers.s3.storage import StoredObject
from workers.services import Sender, Services
from workers.transfer import TransferSummary

log = logging.getLogger(__name__)


def seal_owed(job: Job, summary: TransferSummary, stored: StoredObject) -> dict[str, Any] | None:
    """What sealing this export's object takes, as JSON; None if the object is sealed already."""
    if stored.sealed:
        return None
    return {
        "bucket": stored.bucket,
        "key": stored.key,
        "etag": stored.etag,
        "identity": identity(job.job_id, job.activity_ids),
        "size": summary.size,
        "sha256": summary.sha256,
        "rows": summary.rows,
        "options": job.object_options,
        "content_type": FORMATS[job.format].content_type,
    }


def seal_as_owed(s3: Any, owed: dict[str, Any]) -> None:
    """Seal the object as ``owed`` describes it; ObjectChanged if it is no longer that object."""
    stored = StoredObject(owed["bucket"], owed["key"], owed["size"], 0, owed.get("etag"))
    summary = TransferSummary(owed["size"], owed["sha256"], owed["rows"], [])
    options = ObjectOptions.from_json(owed.get("options"))  # older seals carry none
    content_type = owed.get("content_type") or CSV.content_type  # older seals: CSV
    seal(
        s3, stored, owed["identity"], summary, content_type=content_type, extra=options.copy_args()
    )


def ask_for_seal(sender: Sender, job_id: str, owed: dict[str, Any]) -> None:
    """Send the seal's message. The result is recorded: a broker that cannot take the message
    now must not turn the job into a failure. The seal stays owed in the record and the janitor
    asks again."""
    try:
        sender.send_task(SEAL_TASK, args=[job_id, owed], queue=QUEUE)
    except KombuError as error:
        log.warning("job %s: seal not asked for yet (%s); the janitor will", job_id, error)


def seal_step(services: Services, job_id: str, owed: dict[str, Any], failures: int) -> Again | None:
    """Add the measured figures to a stored export's metadata; idempotent.

    ``failures`` is how many earlier runs of this seal failed. Returns when to try again, or
    None when there is nothing more to do (sealed, superseded, or given up as a dead seal).
    """
    store = services.jobs
    started = time.monotonic()
    try:
        # Only where exports may go: a seal message names its object itself.
        services.settings.allowed_destinations.check(str(owed["bucket"]), str(owed["key"]))
    except InvalidExportRequest as refused:
        log.error("job %s: seal refused: %s", job_id, refused)
        store.give_up_seal(job_id, refused)
        return None
    try:
        seal_as_owed(services.s3, owed)
    except ObjectChanged as changed:
        # A later attempt of the same job replaced the object and owes its own seal.
        log.warning("job %s: not sealed: %s", job_id, changed)
        store.sealed(job_id)
        return None
    except StorageError as error:
        countdown = services.retry.next_try(error, failures + 1)
        if countdown is None:
            log.error("job %s: seal given up after %d attempts: %s", job_id, failures + 1, error)
            store.give_up_seal(job_id, error)
            return None
        log.warning("job %s: seal failed, again in %.1fs: %s", job_id, countdown, error)
        return Again(countdown)
    store.sealed(job_id)
    seconds = time.monotonic() - started
    log.info("job %s: sealed in %.2f s", job_id, seconds, extra={"seal_seconds": round(seconds, 4)})
    return None
