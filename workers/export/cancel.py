"""Cancelling a job: ``contact_exports.cancel`` with ``{"job_id": …}``.

A job on its way is marked cancelled in its record, atomically against its completion
(``JobStore.cancel``), and the caller's result fails at once as ``ExportCancelled``: a caller
waiting on it hears now, not at the job's next poll. The steps stop by themselves: each checks the
mark before its work and before coming back (``retries.check_live``), a download in progress
loses its lease and stops at its next progress report, its upload aborted, and a download that
stored its object just before the cancel deletes it (``download_step``). Nothing is stored.

A job that ended (completed or failed), one cancelled already, or an unknown id is left as it is;
the answer says which, so cancelling twice is harmless.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kombu.exceptions import KombuError

from workers import metrics
from workers.exceptions import ExportCancelled
from workers.export.notify import enqueue_notification, failure_payload
from workers.export.request import CancelResult, parse_cancel_request
from workers.services import Services

log = logging.getLogger(__name__)

CANCELLED = "cancelled"


def cancel_job(services: Services, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The cancel task's result (``CancelResult``); InvalidExportRequest for bad kwargs."""
    job_id = parse_cancel_request(kwargs).job_id
    outcome = services.jobs.cancel(job_id)
    if outcome == CANCELLED:
        record = services.jobs.record(job_id)
        error = ExportCancelled(f"job {job_id} was cancelled")
        services.results.store_result(record.get("result_id") or job_id, error, "FAILURE")
        metrics.EXPORTS_FAILED.labels(type(error).__name__).inc()
        try:
            enqueue_notification(
                services.sender, _notify_url(record), failure_payload(job_id, error)
            )
        except KombuError as failed:  # the cancel stands; only its webhook is lost
            log.error("job %s: cancel webhook not sent: %s", job_id, failed)
        log.info("job %s: cancelled", job_id)
    else:
        log.info("job %s: not cancelled, it is %s", job_id, outcome)
    return CancelResult(job_id=job_id, outcome=outcome).model_dump()  # type: ignore[arg-type]


def _notify_url(record: dict[str, str]) -> str | None:
    try:
        url = json.loads(record.get("kwargs") or "{}").get("notify_url")
    except ValueError:
        return None
    return url if isinstance(url, str) else None
