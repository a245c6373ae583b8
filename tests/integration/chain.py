"""The export chain run in this process: the steps of ``workers.export``, called as the tasks of
``tasks/`` call them, with the broker's part (messages, countdowns) played here.

``run_export`` goes ``start_export`` -> ``create_step`` -> ``poll_step`` -> ``download_step``;
each ``Again`` waits its own countdown (the broker's delay, kept small by the test settings) and
runs the step again on the job it names, passed through JSON as a message would be. A failure is
raised as the task raises it (``workers.exceptions.public_error``) after the job's dead letter is
written (``record_failure``, as ``ExportStep.on_failure`` does).

The side tasks a step sends (seal, notify) and the exports the janitor or a rerun sends land in
an ``Outbox`` instead of the broker, so no worker process can take them; ``deliver`` runs them
here, as ``tasks/sealing.py`` and ``tasks/notify.py`` would.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contact_exports_client.client import EXPORT_TASK
from workers.exceptions import public_error
from workers.export.create import create_step
from workers.export.download import download_step
from workers.export.failure import record_failure
from workers.export.job import Job
from workers.export.notify import notify_step
from workers.export.outcome import Again, Finished, Next
from workers.export.poll import poll_step
from workers.export.seal import seal_step
from workers.export.start import start_export
from workers.export.tasknames import (
    CREATE_TASK,
    DOWNLOAD_TASK,
    NOTIFY_TASK,
    POLL_TASK,
    SEAL_TASK,
)
from workers.services import Services

#: Runs of one step before the driver calls the chain stuck (a task would retry forever).
MAX_RUNS = 500


@dataclass
class Message:
    """One message a step sent: what ``send_task`` was given."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    id: str


@dataclass
class Outbox:
    """A ``Sender`` that keeps every message instead of sending it."""

    sent: list[Message] = field(default_factory=list)

    def send_task(
        self,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        *,
        task_id: str | None = None,
        **options: Any,
    ) -> Message:
        # Through JSON, as the broker carries it.
        message = Message(
            name,
            json.loads(json.dumps(list(args or []))),
            json.loads(json.dumps(dict(kwargs or {}))),
            task_id or str(uuid.uuid4()),
        )
        self.sent.append(message)
        return message

    def take(self, name: str) -> list[Message]:
        """The messages sent to ``name`` so far, removed from the outbox."""
        taken = [m for m in self.sent if m.name == name]
        self.sent = [m for m in self.sent if m.name != name]
        return taken


def as_message(job: Job) -> Job:
    """The job as the next step's message brings it: through JSON."""
    return Job.from_dict(json.loads(json.dumps(job.to_dict())))


def run_export(
    services: Services, kwargs: dict[str, Any], result_id: str | None = None
) -> dict[str, Any]:
    """The caller's result dict, or the contract error the caller would get.

    ``kwargs`` are the caller's, ``result_id`` the id the caller holds (a new one if not given).
    The seal and webhook the export asked for are delivered before this returns, as a worker
    runs them right after.
    """
    chain = _Chain(services)
    try:
        result = chain.run(kwargs, result_id or str(uuid.uuid4()))
    except Exception as error:
        # As ExportStep: the caller sees a contract type, and the job (as the failing step's
        # message carried it) is recorded as failed.
        public = public_error(error, storing=chain.step == DOWNLOAD_TASK)
        if chain.job is not None:
            record_failure(services, chain.job, chain.step, public)
        deliver(services)
        if public is error:
            raise
        raise public from error
    deliver(services)
    return result


class _Chain:
    """Which step runs now, and the job its current message carries."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.step = EXPORT_TASK
        self.job: Job | None = None

    def run(self, kwargs: dict[str, Any], result_id: str) -> dict[str, Any]:
        services = self.services
        started = start_export(services, json.loads(json.dumps(kwargs)), result_id=result_id)
        if isinstance(started, Finished):
            return started.result
        self.step, self.job = CREATE_TASK, as_message(started.job)
        self._until_next(lambda job: create_step(services, job))
        # The first poll waits, as tasks/exports.py sets it.
        time.sleep(services.settings.poll_initial_seconds)
        self.step = POLL_TASK
        self._until_next(lambda job: poll_step(services, job))
        self.step = DOWNLOAD_TASK
        for _ in range(MAX_RUNS):
            assert self.job is not None
            outcome = download_step(services, self.job)
            if isinstance(outcome, Finished):
                return outcome.result
            self._again(outcome)
        raise AssertionError(f"the download still asks to run again after {MAX_RUNS} runs")

    def _until_next(self, step: Callable[[Job], Next | Again]) -> None:
        for _ in range(MAX_RUNS):
            assert self.job is not None
            outcome = step(self.job)
            if isinstance(outcome, Next):
                self.job = as_message(outcome.job)
                return
            self._again(outcome)
        raise AssertionError(f"{self.step} still asks to run again after {MAX_RUNS} runs")

    def _again(self, outcome: Again) -> None:
        """Wait the countdown; the retry carries the job the step learnt, else the message as
        it came."""
        time.sleep(outcome.countdown)
        if outcome.job is not None:
            self.job = as_message(outcome.job)


def deliver(services: Services) -> None:
    """Run the seal and webhook messages waiting in the services' outbox, with their retries."""
    outbox = services.sender
    assert isinstance(outbox, Outbox), "the services must send into an Outbox"
    for message in outbox.take(SEAL_TASK):
        _with_retries(lambda retries, m=message: seal_step(services, *m.args, retries))
    for message in outbox.take(NOTIFY_TASK):
        _with_retries(lambda retries, m=message: notify_step(services, *m.args, retries))


def _with_retries(run: Callable[[int], Any]) -> None:
    """``run(retries)`` until it stops asking to run again, ``retries`` counting the runs before
    (the task's ``self.request.retries``)."""
    for retries in range(MAX_RUNS):
        outcome = run(retries)
        if not isinstance(outcome, Again):
            return
        time.sleep(outcome.countdown)
    raise AssertionError(f"a side task still asks to run again after {MAX_RUNS} runs")
