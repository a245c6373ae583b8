"""A job that failed for good: kept as a dead letter, its uploads swept, its webhook told."""

from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ClientError

from workers import metrics
from workers.exceptions import ExportCancelled, ExportError
from workers.export.download import sweep_uploads
from workers.export.job import Job
from workers.export.manifest import manifest_key
from workers.export.notify import enqueue_notification
from workers.services import Services

log = logging.getLogger(__name__)


def remove_cancelled_object(services: Services, job: Job) -> None:
    """Delete the object at the job's key, and its manifest, if this job wrote it."""
    try:
        head = services.s3.head_object(Bucket=job.bucket, Key=job.key)
    except (ClientError, BotoCoreError):
        return  # nothing there (or S3 cannot say): nothing of ours to delete
    written_by = {k.lower(): v for k, v in head.get("Metadata", {}).items()}.get("job-id")
    if written_by != job.job_id:
        return
    for key in (manifest_key(job.key), job.key):
        try:
            services.s3.delete_object(Bucket=job.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            log.error(
                "job %s: cancelled, but s3://%s/%s stays: %s", job.job_id, job.bucket, key, error
            )
            return
    log.info("job %s: cancelled; its object and manifest are deleted", job.job_id)


def record_failure(services: Services, job: Job, step: str, error: ExportError) -> None:
    """``error`` is what the caller sees (one of the contract's types).

    A cancelled job is no dead letter, whatever its last step met: its record says cancelled
    already, and the cancel told its webhook (``workers.export.cancel``); only its uploads are
    swept here, and an object (with its manifest) that landed before the cancel is deleted.
    """
    cancelled = isinstance(error, ExportCancelled) or services.jobs.cancelled(job.job_id)
    if not cancelled:
        metrics.EXPORTS_FAILED.labels(type(error).__name__).inc()
        services.jobs.fail(job.job_id, step, error)
    swept = sweep_uploads(services.jobs, services.s3, job)
    if swept:
        log.info("job %s: aborted %d open uploads", job.job_id, swept)
    if cancelled:
        remove_cancelled_object(services, job)
        return
    enqueue_notification(
        services.sender,
        job.notify_url,
        {
            "status": "FAILURE",
            "job_id": job.job_id,
            "error_type": type(error).__name__,
            "error_message": str(error),
        },
    )
