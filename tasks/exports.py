"""The export chain: ``export`` -> ``create_export`` -> ``poll_activity`` -> ``download_csv``.

Each task decodes its message, runs its step (``workers.export``) and turns the outcome into a
return value or a ``retry(countdown=…)``, so a waiting export holds no worker slot. Every step
reads the job record first, so a message delivered twice resumes the job instead of redoing it.
"""

from __future__ import annotations

from typing import Any

from celery import chain

from contact_exports_client.client import EXPORT_TASK
from tasks.base import ExportStep
from workers.celery import app
from workers.export.create import create_step
from workers.export.download import download_step
from workers.export.job import Job
from workers.export.outcome import Finished
from workers.export.poll import poll_step
from workers.export.start import start_export
from workers.export.tasknames import CREATE_TASK, DOWNLOAD_TASK, POLL_TASK


@app.task(bind=True, base=ExportStep, name=EXPORT_TASK, max_retries=None)
def export(self: ExportStep, /, **kwargs: Any) -> dict[str, Any]:
    """Validate the request, fix its job_id and destination, and become the chain."""
    outcome = start_export(self.services, kwargs, result_id=str(self.request.id))
    if isinstance(outcome, Finished):
        return outcome.result
    job = outcome.job
    # The first poll waits: an activity is never done the moment it is created.
    first_poll = poll_activity.s().set(countdown=self.services.settings.poll_initial_seconds)
    steps = chain(create_export.s(job.to_dict()), first_poll, download_csv.s())
    raise self.replace(steps)


#: The options of the steps before the last. They pass the job on in the chain's next message;
#: storing it as their result too would only leave the internal job record in the result
#: backend, one parent_id away from the caller's id (docs/contract.md §6). Failures are still
#: stored: Celery hands a failure on to the chain's last step, whose id is the caller's.
PASSING_ON: dict[str, Any] = {
    "bind": True,
    "base": ExportStep,
    "max_retries": None,
    "ignore_result": True,
    "store_errors_even_if_ignored": True,
}


@app.task(name=CREATE_TASK, **PASSING_ON)
def create_export(self: ExportStep, job: dict[str, Any]) -> dict[str, Any]:
    """POST the export once per job; a repeated delivery reuses the recorded activity."""
    return self.finish(create_step(self.services, Job.from_dict(job)))


@app.task(name=POLL_TASK, **PASSING_ON)
def poll_activity(self: ExportStep, job: dict[str, Any]) -> dict[str, Any]:
    """Check the activities once; if still running, come back later instead of waiting."""
    return self.finish(poll_step(self.services, Job.from_dict(job)))


@app.task(bind=True, base=ExportStep, name=DOWNLOAD_TASK, max_retries=None)
def download_csv(self: ExportStep, job: dict[str, Any]) -> dict[str, Any]:
    """Stream the CSV into S3; the object appears only once the whole body arrived intact."""
    return self.finish(download_step(self.services, Job.from_dict(job)))
