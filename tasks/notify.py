"""``contact_exports.notify``: the completion webhook (``workers.export.notify``)."""

from __future__ import annotations

from typing import Any

from tasks.base import GuardedTask
from workers.celery import app
from workers.export.notify import notify_step
from workers.export.outcome import Again
from workers.export.tasknames import NOTIFY_TASK


@app.task(bind=True, base=GuardedTask, name=NOTIFY_TASK, max_retries=None)
def notify(self: GuardedTask, url: str, payload: dict[str, Any]) -> int | None:
    outcome = notify_step(self.services, url, payload, failures=self.request.retries)
    if isinstance(outcome, Again):
        self.come_back(outcome.countdown)
    return outcome
