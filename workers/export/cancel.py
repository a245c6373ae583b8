"""Cancelling a job: ``contact_exports.cancel`` with ``{"job_id": …}``.

A job on its way is marked cancelled in its record, atomically against its completion
(``JobStore.cancel``), and the caller's result fails at once as ``ExportCancelled``: a caller
waiting on it hears now, not at the job's next poll. The steps stop by themselves: each checks the
mark before its work and before coming back (``retries.check_live``), a download in progress
loses its lease and stops at its next progress report, its upload aborted, and a download that
stored its object just before the cancel deletes it (``download_step``). Nothing is stored.

A job that ended (completed or failed), one cancelled already, or an unknown id is left as it is;
the answer says which, so cancelling twice is harmless.

Two ways in, one ``cancel_job``: the task, which any caller can send by name, and a remote-control
command (``answer_cancels``) that the client helper and the command line use, because it does not
wait behind queued exports.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery
from celery.worker import control
from kombu.exceptions import KombuError

from contact_exports_client.client import CANCEL_COMMAND
from workers import metrics
from workers.exceptions import ExportCancelled, InvalidExportRequest
from workers.export.notify import enqueue_notification, failure_payload
from workers.export.request import CancelResult, parse_cancel_request
from workers.services import ResultStore, Sender
from workers.state.jobs import JobStore

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
#: What the job store answers a worker that hears a cancel request another worker carried out.
BY_THIS_REQUEST = "cancelled by this request"
#: Longest a worker's main process spends on one cancel command: it runs in the loop that
#: consumes messages, which a Redis in trouble (whose client retries for a minute) must not
#: hold. Past it the caller hears nothing from this worker, and sends the task.
COMMAND_SECONDS = 2.0


def cancel_job(
    jobs: JobStore,
    results: ResultStore,
    sender: Sender,
    kwargs: dict[str, Any],
    request: str = "",
) -> dict[str, Any]:
    """The cancel's answer (``CancelResult``); InvalidExportRequest for bad kwargs.

    ``request`` names a cancel request that several workers act on (``answer_cancels``): the
    one that cancels does what a cancel does, and every one answers ``cancelled``, so the
    caller hears the same whichever answer comes first.
    """
    job_id = parse_cancel_request(kwargs).job_id
    outcome = jobs.cancel(job_id, request)
    if outcome == BY_THIS_REQUEST:
        log.info("job %s: cancelled by this request on another worker", job_id)
        outcome = CANCELLED
    elif outcome == CANCELLED:
        record = jobs.record(job_id)
        error = ExportCancelled(f"job {job_id} was cancelled")
        results.store_result(record.get("result_id") or job_id, error, "FAILURE")
        metrics.EXPORTS_FAILED.labels(type(error).__name__).inc()
        try:
            enqueue_notification(sender, _notify_url(record), failure_payload(job_id, error))
        except KombuError as failed:  # the cancel stands; only its webhook is lost
            log.error("job %s: cancel webhook not sent: %s", job_id, failed)
        log.info("job %s: cancelled", job_id)
    else:
        log.info("job %s: not cancelled, it is %s", job_id, outcome)
    return CancelResult(job_id=job_id, outcome=outcome).model_dump()  # type: ignore[arg-type]


def answer_cancels(app: Celery, jobs: Callable[[], JobStore]) -> None:
    """Answer ``CANCEL_COMMAND`` (the workers' remote control) in this worker's main process.

    The ``contact_exports.cancel`` task waits its turn in the queue, behind every export sent
    before it, and then for a free slot; a remote-control command reaches every worker's main
    process at once, whatever its slots are doing. The client helper and the command line
    cancel this way, and send the task only when no worker answers. Where messages are signed,
    Celery signs and checks these commands as it does tasks (its mailbox uses the task
    serializer). ``jobs`` is called on the first cancel, so a worker that is never asked opens
    no connection for it.
    """
    store = functools.cache(jobs)
    pool = ThreadPoolExecutor(1, thread_name_prefix="cancel-command")

    def carry_out(job_id: Any, request: str) -> dict[str, Any]:
        try:
            return cancel_job(store(), app.backend, app, {"job_id": job_id}, request)
        except InvalidExportRequest as error:
            return {"error": f"{type(error).__name__}: {error}"}

    def cancel(state: Any, job_id: Any = None, request: Any = "", **_: Any) -> dict[str, Any]:
        done = pool.submit(carry_out, job_id, str(request or ""))
        try:
            return done.result(timeout=COMMAND_SECONDS)
        except TimeoutError:
            log.warning("job %s: cancel command still running after %ss", job_id, COMMAND_SECONDS)
            return {"error": "the cancel did not finish in time here"}
        except Exception as error:  # Redis down, say: the caller falls back to the task
            log.error("job %s: cancel command failed: %s", job_id, error)
            return {"error": f"{type(error).__name__}: {error}"}

    control.control_command(
        name=CANCEL_COMMAND, args=[("job_id", str), ("request", str)], signature="<job_id>"
    )(cancel)


def _notify_url(record: dict[str, str]) -> str | None:
    try:
        url = json.loads(record.get("kwargs") or "{}").get("notify_url")
    except ValueError:
        return None
    return url if isinstance(url, str) else None
