"""A job that failed for good: kept as a dead letter, its uploads swept, its webhook told."""

from __future__ import annotations

import logging

from workers import metrics
from workers.exceptions import ExportCancelled, ExportError
from workers.export.download import remove_stored, sweep_uploads
from workers.export.job import Job
from workers.export.notify import enqueue_notification, failure_payload
from workers.services import Services

log = logging.getLogger(__name__)


def record_failure(services: Services, job: Job, step: str, error: ExportError) -> None:
    """``error`` is what the caller sees (one of the contract's types).

    A cancelled job is no dead letter, whatever its last step met: its record says cancelled
    already, and the cancel told its webhook (``workers.export.cancel``). Either way its uploads
    are swept, and an object (with its manifest) this job stored is deleted: a job that does not
    complete stores neither.
    """
    cancelled = isinstance(error, ExportCancelled) or services.jobs.cancelled(job.job_id)
    if not cancelled:
        metrics.EXPORTS_FAILED.labels(type(error).__name__).inc()
        services.jobs.fail(job.job_id, step, error)
    swept = sweep_uploads(services.jobs, services.s3, job)
    if swept:
        log.info("job %s: aborted %d open uploads", job.job_id, swept)
    if services.jobs.result(job.job_id) is None:  # it did not complete after all
        remove_stored(services.s3, job)
    if cancelled:
        return
    enqueue_notification(services.sender, job.notify_url, failure_payload(job.job_id, error))
