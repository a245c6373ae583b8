"""What every export task shares: message decoding, log context, the stage timer, turning a
step's outcome into Celery's terms, and a dead letter for a job that fails for good.

The tasks are thin on purpose: the steps (``workers.export``) do the work on typed values and
know nothing of Celery; these tasks only translate between the two.
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from workers import metrics
from workers.exceptions import ExportCancelled, public_error
from workers.export.failure import record_failure
from workers.export.job import Job
from workers.export.outcome import Again, Finished, Next, Outcome
from workers.export.tasknames import STAGES, Stage
from workers.lifecycle import services_of
from workers.logconfig import bind_job
from workers.services import Services

#: Celery's control flow, which passes through untouched.
CONTROL = (Retry, Ignore, Reject)


class GuardedTask(Task):  # type: ignore[type-arg]  # celery's Task is generic only in stubs
    """Every task of this service: a malformed message is refused, the worker goes on
    (``workers.poison``)."""

    Strategy = "workers.poison:guarded"

    @property
    def services(self) -> Services:
        """What this worker process built for its tasks (``workers.lifecycle``)."""
        return services_of(self.app).get()

    def come_back(self, countdown: float, args: tuple[Any, ...] | None = None) -> NoReturn:
        """Run this task again after ``countdown`` seconds, under the same id: ``retry``, without
        the RETRY state Celery would store at that id.

        The download step runs under the caller's id, so a stored RETRY would replace the
        PROGRESS the caller reads (docs/contract.md §2) for as long as the step waits, with no
        info; and for the other steps each wait left a RETRY record with its traceback in the
        result backend for a week. The next message is sent exactly as ``retry`` sends it; then
        the run ends as ignored, which stores nothing.
        """
        again = self.retry(args=args, countdown=countdown, throw=False)
        if self.request.is_eager:
            raise again  # run in-process (apply): Celery's own loop runs the retry
        raise Ignore()


class ExportStep(GuardedTask):
    """Base of the export chain's tasks; each takes the job (a dict) as its one argument,
    except ``contact_exports.export``, which takes the caller's kwargs."""

    @property
    def stage(self) -> Stage:
        return STAGES[self.name]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The log context is read from the message as it is: the step decodes the job itself.
        data = _job_data(args) or kwargs
        activities = data.get("activities")
        first = activities[0] if isinstance(activities, list) and activities else None
        bind_job(
            job_id=data.get("job_id"),
            account=data.get("account"),
            activity_id=first.get("activity_id") if isinstance(first, dict) else None,
            stage=self.stage.value,
        )
        with metrics.STAGE_SECONDS.labels(self.stage.value).time():
            try:
                return super().__call__(*args, **kwargs)
            except CONTROL:
                raise
            except Exception as error:
                public = public_error(error, storing=self.stage is Stage.DOWNLOADING)
                if public is error:
                    raise
                raise public from error

    def finish(self, outcome: Outcome) -> dict[str, Any]:
        """The step's outcome as this task's return value, or a retry."""
        if isinstance(outcome, Again):
            args = (outcome.job.to_dict(),) if outcome.job is not None else None
            self.come_back(outcome.countdown, args)
        if isinstance(outcome, Next):
            return outcome.job.to_dict()
        assert isinstance(outcome, Finished)
        return outcome.result

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job = _job_in(args)
        public = public_error(exc, storing=False)
        if job is not None:
            record_failure(self.services, job, self.name, public)
        elif not isinstance(public, ExportCancelled):  # counted by the cancel
            # The export task itself (a refused request): no job yet, but a failure all the same.
            metrics.EXPORTS_FAILED.labels(type(public).__name__).inc()


def _job_data(args: Any) -> dict[str, Any] | None:
    """The job record a chain step's message carries (its one positional argument), undecoded,
    if it has one."""
    if isinstance(args, list | tuple) and len(args) == 1 and isinstance(args[0], dict):
        data: dict[str, Any] = args[0]
        if "job_id" in data and "result_id" in data:
            return data
    return None


def _job_in(args: Any) -> Job | None:
    """The job a chain step's message carries, decoded, if it has one."""
    data = _job_data(args)
    if data is None:
        return None
    try:
        return Job.from_dict(data)
    except (TypeError, ValueError, KeyError):
        return None  # not a job after all: the step itself will refuse it
