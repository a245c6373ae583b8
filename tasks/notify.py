"""``contact_exports.notify``: the completion webhook (``workers.export.notify``)."""

from __future__ import annotations

from typing import Any

from celery import Task

from tasks.base import GuardedTask
from workers.celery import app
from workers.export.notify import notify_step
from workers.export.outcome import Again
from workers.export.tasknames import NOTIFY_TASK
from workers.lifecycle import services_of


@app.task(bind=True, base=GuardedTask, name=NOTIFY_TASK, max_retries=None)
def notify(self: Task[Any, Any], url: str, payload: dict[str, Any]) -> int | None:
    outcome = notify_step(services_of(self.app).get(), url, payload, failures=self.request.retries)
    if isinstance(outcome, Again):
        raise self.retry(countdown=outcome.countdown)
    return outcome
