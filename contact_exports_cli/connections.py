"""Where the command line finds Redis and Celery, from the environment alone.

The workers' settings (``workers.settings``) insist on Constant Contact credentials, which an
operator submitting or inspecting jobs need not have, so the URLs are read here with the same
names and defaults (docs/contract.md §5) instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult

from contact_exports_cli.exceptions import InvalidUsageError, ServiceUnreachableError
from contact_exports_client import DEFAULT_REDIS_URL, EXPORT_TASK
from contact_exports_client.client import CALLER_CONF, record_before_sending
from contact_exports_client.redis_tls import (
    RedisTls,
    mask_url,
    redis_at,
    tls_failure,
    use_redis_tls,
)
from contact_exports_client.sentinel import use_sentinel
from contact_exports_client.signing import MessageSigning, sign_messages

#: Seconds to wait for Redis to accept a connection: it is local or close, and an operator
#: at a prompt should hear within seconds that it is down.
CONNECT_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Endpoints:
    broker_url: str
    backend_url: str
    #: Where job records and accounts live (JOBS_REDIS_URL, else the result backend).
    jobs_url: str
    #: The TLS files for ``rediss://`` URLs (REDIS_CA_FILE, REDIS_CERT_FILE, REDIS_KEY_FILE).
    tls: RedisTls = field(default_factory=RedisTls)

    @classmethod
    def from_env(cls) -> Endpoints:
        broker = os.environ.get("CELERY_BROKER_URL") or DEFAULT_REDIS_URL
        backend = os.environ.get("CELERY_RESULT_BACKEND") or DEFAULT_REDIS_URL
        jobs = os.environ.get("JOBS_REDIS_URL") or backend
        return cls(broker, backend, jobs, RedisTls.from_env())


def redact(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    return mask_url(url)


def connect_redis(url: str, what: str, tls: RedisTls | None = None) -> redis.Redis:
    """A client that has answered a PING, or ServiceUnreachableError naming ``what`` it is for.

    A ``rediss://`` URL is verified against ``tls`` (default: REDIS_CA_FILE, ...).
    """
    try:
        client = redis_at(
            url, tls, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=30.0
        )
    except ValueError as error:  # a URL that leads nowhere: a Sentinel URL without its master
        raise InvalidUsageError(f"Redis ({what}) at {redact(url)}: {error}") from None
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as error:
        client.close()
        raise ServiceUnreachableError(
            f"cannot reach Redis ({what}) at {redact(url)}: {_reason(error)}",
            hint=_hint(error),
        ) from None
    return client


def _reason(error: redis.RedisError) -> str:
    failure = tls_failure(error)
    if failure is not None:
        what = "the server's TLS certificate is not trusted" if failure.untrusted else "TLS failed"
        return f"{what} ({failure.detail})"
    if isinstance(error, redis.AuthenticationError):
        return f"Redis refused the credentials ({error})"
    return str(error)


def _hint(error: redis.RedisError) -> str:
    failure = tls_failure(error)
    if failure is not None:
        return failure.fix
    if isinstance(error, redis.AuthenticationError):
        return "check the user name and password in the Redis URLs the workers use"
    return "start Redis there, or point CELERY_BROKER_URL / CELERY_RESULT_BACKEND at one"


class JobNamedCelery(Celery):
    """A Celery client that sends each export under its job's id as the task id.

    Every job a command sends (a submit with ``--job-id``, a retry) can then be looked up in the
    result backend by its job id alone: ``status`` and ``result`` need nothing else. Each new job's
    record is written before its message (``contact_exports_client.ledger``).
    """

    def send_task(self, name: str, *args: Any, **options: Any) -> AsyncResult[Any]:
        kwargs = options.get("kwargs") or {}
        if name == EXPORT_TASK and isinstance(kwargs, dict):
            options["task_id"] = record_before_sending(self, kwargs, options.get("task_id"))
        return super().send_task(name, *args, **options)


def celery_app(endpoints: Endpoints) -> Celery:
    """A plain client of the workers (no ``workers`` import: no worker settings needed)."""
    app = JobNamedCelery(
        "contact_exports_cli",
        broker=endpoints.broker_url,
        backend=endpoints.backend_url,
        set_as_current=False,
    )
    app.conf.update(
        **CALLER_CONF,
        redis_socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
    )
    use_redis_tls(app, endpoints.broker_url, endpoints.backend_url, endpoints.tls)
    try:
        use_sentinel(app, endpoints.broker_url, endpoints.backend_url)
        signing = MessageSigning.from_env()
    except ValueError as error:
        raise InvalidUsageError(str(error)) from None
    if signing is not None:  # where the workers accept only signed messages
        sign_messages(app, signing)
    return app


def close_app(app: Celery) -> None:
    """Close every connection the app opened.

    ``Celery.close`` releases the broker's pool but not the result backend's Redis pool or the
    pub/sub connection ``result.get`` listens on; run in-process (tests, an application calling
    a command) those sockets would stay open.
    """
    backend: Any = app.backend
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
        consumer.stop()
    client = vars(backend).get("client")  # a cached property: present only once it was used
    if client is not None:
        client.connection_pool.disconnect()
    app.close()


def reachable_app(endpoints: Endpoints) -> Celery:
    """The Celery client, once the broker and the backend have answered."""
    connect_redis(endpoints.broker_url, "broker", endpoints.tls).close()
    if endpoints.backend_url != endpoints.broker_url:
        connect_redis(endpoints.backend_url, "result backend", endpoints.tls).close()
    return celery_app(endpoints)
