"""``contact_exports.seal``: adds the measured figures to a stored export's metadata, after the
caller has its result (``workers.export.seal`` says why and how)."""

from __future__ import annotations

from typing import Any

from tasks.base import GuardedTask
from workers.celery import app
from workers.export.seal import seal_step
from workers.export.tasknames import SEAL_TASK


@app.task(bind=True, base=GuardedTask, name=SEAL_TASK, max_retries=None)
def seal_export(self: GuardedTask, job_id: str, owed: dict[str, Any]) -> None:
    again = seal_step(self.services, job_id, owed, failures=self.request.retries)
    if again is not None:
        self.come_back(again.countdown)
