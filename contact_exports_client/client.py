"""Enqueue an export and wait for it, typed, from any Python application.

Everything goes by task name over Celery (docs/contract.md §1), so nothing here imports ``workers``
or ``tasks``: those validate the worker's settings (CC_ACCESS_TOKEN, ...) as they load, and an
application that only asks for exports has no business holding Constant Contact credentials.
The request is checked by the worker; ``schemas/export-task-kwargs.schema.json`` lets a caller
check it first.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import redis
from celery import Celery, states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, EagerResult
from kombu.exceptions import KombuError

from contact_exports_client.ledger import record_submission
from contact_exports_client.redis_tls import RedisTls, reconnecting, redis_at, use_redis_tls
from contact_exports_client.sentinel import FAILOVER_COMMAND_RETRIES, use_sentinel, uses_sentinel
from contact_exports_client.signing import MessageSigning, of_app, sealer, sign_messages
from contact_exports_client.types import Destination, ExportKwargs, ExportResult, Progress

#: The task that starts an export (docs/contract.md §1).
EXPORT_TASK = "contact_exports.export"
#: The task that cancels one (docs/contract.md §1.2).
CANCEL_TASK = "contact_exports.cancel"
#: The workers' remote-control command that cancels at once (``cancel_export``).
CANCEL_COMMAND = "contact_exports_cancel"
#: Seconds ``cancel_export`` waits for a worker to answer the command before it sends the task.
CANCEL_ANSWER_SECONDS = 1.0
#: The only queue the workers consume.
QUEUE = "contact_exports"
#: Broker and backend when neither argument nor environment names one (docs/contract.md §5).
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: Result state while an export runs; ``result.info`` is then a :class:`Progress`.
PROGRESS = "PROGRESS"
#: How long :func:`wait` waits by default: the workers' own default deadline is six hours,
#: but a caller that waits in-line rarely wants more than one.
DEFAULT_TIMEOUT_SECONDS = 3600.0
#: Seconds ``wait`` pauses before asking again when Redis dropped the connection.
RECONNECT_PAUSE_SECONDS = 0.5
#: How often :func:`wait` looks at a result backend that cannot push state changes (Redis can).
POLL_SECONDS = 0.25

ProgressCallback = Callable[[Progress], None]

#: The settings of any caller's Celery app: JSON only, as the workers speak it, and a broker that
#: is down is reported to the caller at once instead of being retried at start.
CALLER_CONF: Mapping[str, Any] = MappingProxyType(
    {
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "broker_connection_retry_on_startup": False,
    }
)


class WaitTimeoutError(TimeoutError):
    """:func:`wait` gave up; the export goes on in the workers and can be waited for again."""


class Snapshot(NamedTuple):
    """A result's state and info as one read of the backend saw them."""

    state: str
    info: Any


def snapshot(result: AsyncResult[Any]) -> Snapshot:
    """Read state and info together.

    ``result.state`` and ``result.info`` each fetch the backend anew until the result is ready,
    so reading one after the other can pair PROGRESS with the final result dict (or an
    exception) written in between. One fetch gives a pair the workers really published.
    """
    meta = result.backend.get_task_meta(result.id)
    return Snapshot(str(meta.get("status")), meta.get("result"))


def make_app(
    broker_url: str | None = None,
    backend_url: str | None = None,
    *,
    tls: RedisTls | None = None,
    signing: MessageSigning | None = None,
) -> Celery:
    """A Celery client that speaks only JSON, like the workers.

    Unset URLs come from CELERY_BROKER_URL and CELERY_RESULT_BACKEND; the backend falls back to
    the broker, since both live in one Redis in every deployment this service documents.
    ``rediss://`` URLs are verified against ``tls`` (default: REDIS_CA_FILE, REDIS_CERT_FILE and
    REDIS_KEY_FILE). Where the workers accept only signed messages, ``signing`` (default:
    MESSAGE_SIGNING_KEY and MESSAGE_SIGNING_CERT) signs what this app sends.
    """
    broker = broker_url or os.environ.get("CELERY_BROKER_URL") or DEFAULT_REDIS_URL
    backend = backend_url or os.environ.get("CELERY_RESULT_BACKEND") or broker
    return _shared_app(
        broker,
        backend,
        tls if tls is not None else RedisTls.from_env(),
        signing if signing is not None else MessageSigning.from_env(),
    )


@lru_cache(maxsize=8)
def _shared_app(
    broker: str, backend: str, tls: RedisTls, signing: MessageSigning | None = None
) -> Celery:
    # One app per URL pair: each holds connection pools that a result needs for as long as the
    # caller keeps it, so a fresh app per call would leak them.
    app = Celery("contact_exports_client", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        **CALLER_CONF,
        # Celery lets CELERY_BROKER_URL and CELERY_RESULT_BACKEND win over URLs given in code, so
        # an application whose own Celery uses those variables would send exports to its own
        # broker. These two settings, and the backend class below, are read before them.
        broker_read_url=broker,
        broker_write_url=broker,
    )
    app.backend_cls = backend
    use_redis_tls(app, broker, backend, tls)
    use_sentinel(app, broker, backend)
    if signing is not None:
        sign_messages(app, signing)
    return app


def export_kwargs(
    export: Mapping[str, Any],
    *,
    account: str | None = None,
    job_id: str | None = None,
    destination: Destination | None = None,
    format: str | None = None,
) -> ExportKwargs:
    """The task's kwargs; what is left out takes the worker's default (docs/contract.md §1)."""
    kwargs: ExportKwargs = {"export": dict(export)}
    if format is not None:
        kwargs["format"] = format
    if account is not None:
        kwargs["account"] = account
    if job_id is not None:
        kwargs["job_id"] = job_id
    if destination is not None:
        kwargs["destination"] = destination
    return kwargs


def submit_export(
    export: Mapping[str, Any],
    *,
    account: str | None = None,
    job_id: str | None = None,
    destination: Destination | None = None,
    format: str | None = None,
    app: Celery | None = None,
    broker_url: str | None = None,
) -> AsyncResult[Any]:
    """Enqueue one export; the returned result is what :func:`wait` takes.

    With a ``job_id`` the Celery task id is the job id, so the result can be found again from
    the job id alone (``AsyncResult(job_id)``, ``contact-exports status JOB_ID``). Sending the
    same job id again is safe: the workers run each job once and hand back the same result.
    The job's record is written first (``contact_exports_client.ledger``), so the workers send
    it again should the broker lose its message.
    """
    if app is not None and broker_url is not None:
        raise TypeError("give app or broker_url, not both")
    client = app or make_app(broker_url)
    kwargs = export_kwargs(
        export, account=account, job_id=job_id, destination=destination, format=format
    )
    task_id = record_before_sending(client, kwargs)
    return client.send_task(EXPORT_TASK, kwargs=dict(kwargs), queue=QUEUE, task_id=task_id)


def cancel_export(
    job_id: str, *, app: Celery | None = None, broker_url: str | None = None
) -> AsyncResult[Any]:
    """Ask the workers to cancel the job ``job_id``; the result's ``get()`` says what they found
    (``{"job_id", "outcome"}``: ``cancelled``, ``cancelled already``, ``completed``, ``failed``,
    ``unknown``). A cancelled export's own result fails as ``ExportCancelled``.

    Where a worker answered at once, the result is already resolved and its id is stored
    nowhere; otherwise it is the cancel task's (docs/contract.md §1.2)."""
    if app is not None and broker_url is not None:
        raise TypeError("give app or broker_url, not both")
    client = app or make_app(broker_url)
    # A running worker answers at once through its remote control; the task would wait behind
    # every export queued before it. Without an answer (no worker up, remote control off, or
    # its Redis in trouble), the task goes, and the first worker to get it cancels. Every worker
    # hears the command; the request id lets each answer what this request did.
    if of_app(client) is None:  # signed replies would need the workers' certificates trusted
        request = str(uuid.uuid4())
        try:
            replies = client.control.broadcast(
                CANCEL_COMMAND,
                arguments={"job_id": job_id, "request": request},
                reply=True,
                limit=1,
                timeout=CANCEL_ANSWER_SECONDS,
            )
        except (KombuError, OSError):
            replies = []
        for reply in replies or []:
            for answer in reply.values():
                if isinstance(answer, dict) and "outcome" in answer:
                    return EagerResult(request, answer, states.SUCCESS)
    return client.send_task(CANCEL_TASK, kwargs={"job_id": job_id}, queue=QUEUE)


def record_before_sending(
    app: Celery, kwargs: Mapping[str, Any], task_id: str | None = None
) -> str:
    """Write the export's job record; return the task id to send it under.

    The task id is the one given, else the job id, else a new one: chosen here, since the
    workers take it for the job id of a job sent without one. The record comes first because
    once sent, a broker restart may lose the message before any worker sees it.
    """
    job_id = kwargs.get("job_id")
    job_id = job_id if isinstance(job_id, str) and job_id else None
    task_id = task_id or job_id or str(uuid.uuid4())
    jobs = jobs_redis(app)
    if jobs is not None:
        record_submission(jobs, job_id or task_id, task_id, kwargs, sealer(of_app(app)))
    return task_id


def jobs_redis(app: Celery) -> redis.Redis | None:
    """Where the workers keep job records: JOBS_REDIS_URL, else the app's Redis result backend.

    None when neither is Redis (an in-memory backend in tests): there is no job store to write.
    """
    url = os.environ.get("JOBS_REDIS_URL")
    backend_url = getattr(app.backend, "url", None)
    if not url and isinstance(backend_url, str) and uses_sentinel(backend_url):
        url = backend_url  # a client of our own, that rides out a failover
    if url:
        tls = getattr(app, "redis_tls", None)
        return _redis_at(url, tls if isinstance(tls, RedisTls) else RedisTls.from_env())
    client = getattr(app.backend, "client", None)
    return client if isinstance(client, redis.Redis) else None


@lru_cache(maxsize=8)
def _redis_at(url: str, tls: RedisTls) -> redis.Redis:
    if uses_sentinel(url):
        return redis_at(url, tls, **reconnecting(FAILOVER_COMMAND_RETRIES))
    return redis_at(url, tls)


def wait(
    result: AsyncResult[Any],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Block until the export ends; return its result dict or raise its error.

    ``on_progress`` gets each PROGRESS report (stage, percent_done, activity_id, bytes) as the
    workers publish it. A failure raises the worker's exception, rebuilt by Celery: its
    ``type(exc).__name__`` is one of docs/contract.md §3. Past ``timeout`` seconds
    :class:`WaitTimeoutError` is raised and the export goes on. A Redis that restarts or fails
    over meanwhile is waited for, within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    try:
        return _wait_once(result, timeout, on_progress)
    except (redis.ConnectionError, redis.TimeoutError, ConnectionError):
        pass
    # Redis restarted or failed over (Sentinel) under the subscription: the export goes on in
    # the workers and its result is kept. Celery's result object now holds the connection's
    # error, so a fresh one is polled until Redis answers again.
    while True:
        time.sleep(RECONNECT_PAUSE_SECONDS)
        fresh: AsyncResult[Any] = result.app.AsyncResult(result.id)
        try:
            value = _poll(fresh, max(0.0, deadline - time.monotonic()), on_progress)
        except CeleryTimeoutError:
            raise _timed_out(result, timeout) from None
        except (redis.ConnectionError, redis.TimeoutError, ConnectionError):
            if time.monotonic() + RECONNECT_PAUSE_SECONDS >= deadline:
                raise
            continue
        return cast(ExportResult, value)


def _wait_once(
    result: AsyncResult[Any], timeout: float, on_progress: ProgressCallback | None
) -> ExportResult:
    if on_progress is not None:
        _relay(on_progress, *snapshot(result))  # what happened before we listened
    try:
        if getattr(result.backend, "is_async", False):
            value = result.get(
                timeout=timeout,
                propagate=True,
                on_message=_on_message(result.id, on_progress) if on_progress else None,
            )
        else:
            value = _poll(result, timeout, on_progress)
    except CeleryTimeoutError:
        raise _timed_out(result, timeout) from None
    return cast(ExportResult, value)


def _timed_out(result: AsyncResult[Any], timeout: float) -> WaitTimeoutError:
    return WaitTimeoutError(f"export {result.id} did not finish within {timeout:g}s")


def _on_message(task_id: str, on_progress: ProgressCallback) -> Callable[[dict[str, Any]], None]:
    def on_message(meta: dict[str, Any]) -> None:
        # One connection may carry the states of several results this process waits for.
        if meta.get("task_id") == task_id:
            _relay(on_progress, str(meta.get("status")), meta.get("result"))

    return on_message


def _relay(on_progress: ProgressCallback, state: str, info: Any) -> None:
    if state == PROGRESS and isinstance(info, dict):
        on_progress(cast(Progress, info))


def _poll(result: AsyncResult[Any], timeout: float, on_progress: ProgressCallback | None) -> Any:
    """For result backends that cannot push state changes: look again every POLL_SECONDS."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while not result.ready():
        if time.monotonic() > deadline:
            raise CeleryTimeoutError
        state, info = snapshot(result)
        if on_progress is not None and info != last:
            _relay(on_progress, state, info)
            last = info
        time.sleep(POLL_SECONDS)
    return result.get(timeout=1.0, propagate=True)
