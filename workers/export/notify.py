"""The completion webhook as a task of its own, so a slow or failing receiver never delays an
export: the export is finished before the first delivery attempt starts.

Deliveries retry by the one retry policy (``workers.retry``); one that keeps failing is given
up after RETRY_MAX_ATTEMPTS and logged, and a 4xx answer is final at once.
"""

from __future__ import annotations

import logging
from typing import Any

from contact_exports_client.client import QUEUE
from workers.exceptions import TransientError
from workers.export.outcome import Again
from workers.export.tasknames import NOTIFY_TASK
from workers.services import Sender, Services
from workers.webhooks import deliver

log = logging.getLogger(__name__)


def enqueue_notification(sender: Sender, url: str | None, payload: dict[str, Any]) -> None:
    if url:
        sender.send_task(NOTIFY_TASK, args=[url, payload], queue=QUEUE)


def failure_payload(job_id: str, error: BaseException) -> dict[str, Any]:
    """The webhook body of a job that ended without a result (failed, or cancelled)."""
    return {
        "status": "FAILURE",
        "job_id": job_id,
        "error_type": type(error).__name__,
        "error_message": str(error),
    }


def notify_step(
    services: Services, url: str, payload: dict[str, Any], failures: int
) -> int | Again | None:
    """POST the outcome once: its HTTP status, when to try again, or None if given up."""
    settings = services.settings
    job_id = payload.get("job_id")
    if settings.webhook_secret is None:
        log.error("webhook for job %s dropped: WEBHOOK_SECRET is not set", job_id)
        return None
    try:
        status = deliver(url, payload, settings.webhook_secret.get_secret_value())
    except TransientError as error:
        countdown = services.retry.next_try(error, failures + 1)
        if countdown is None:
            log.error("webhook for job %s given up after %d tries: %s", job_id, failures + 1, error)
            return None
        return Again(countdown)
    if status >= 400:
        log.error("webhook for job %s refused with HTTP %d", job_id, status)
    return status
