"""The completion webhook as a task of its own, so a slow or failing receiver never delays an
export: the export is finished before the first delivery attempt starts."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.utils.log import get_task_logger

from workers import app
from workers.backoff import after_failure
from workers.exceptions import TransientError
from workers.settings import get_settings
from workers.webhooks import deliver

log = get_task_logger(__name__)

#: Deliveries tried before a webhook is given up (about 15 minutes of backoff).
MAX_ATTEMPTS = 10


def enqueue_notification(url: str | None, payload: dict[str, Any]) -> None:
    if url:
        notify.apply_async(args=(url, payload))


@app.task(bind=True, name="contact_exports.notify", max_retries=None)
def notify(self: Task[Any, Any], url: str, payload: dict[str, Any]) -> int | None:
    settings = get_settings()
    if settings.webhook_secret is None:
        log.error("webhook for job %s dropped: WEBHOOK_SECRET is not set", payload.get("job_id"))
        return None
    try:
        status = deliver(url, payload, settings.webhook_secret.get_secret_value())
    except TransientError as error:
        if self.request.retries + 1 >= MAX_ATTEMPTS:
            log.error("webhook for job %s given up: %s", payload.get("job_id"), error)
            return None
        raise self.retry(
            countdown=after_failure(
                self.request.retries, initial=2.0, cap=settings.retry_max_seconds
            )
        ) from error
    if status >= 400:
        log.error("webhook for job %s refused with HTTP %d", payload.get("job_id"), status)
    return status
