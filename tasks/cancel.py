"""``contact_exports.cancel``: stop a job on its way (``workers.export.cancel``)."""

from __future__ import annotations

from typing import Any

from contact_exports_client.client import CANCEL_TASK
from tasks.base import GuardedTask
from workers.celery import app
from workers.export.cancel import cancel_job


@app.task(bind=True, base=GuardedTask, name=CANCEL_TASK)
def cancel(self: GuardedTask, /, **kwargs: Any) -> dict[str, Any]:
    """Cancel the job named by ``job_id``; says what it found."""
    services = self.services
    return cancel_job(services.jobs, services.results, services.sender, kwargs)
