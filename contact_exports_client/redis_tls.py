"""Redis over TLS for everyone who talks to the service's Redis: the workers, the client
helper and the command line read the same variables, so one setting reaches every connection.

It sits in the client package, beside ``keys``, because callers connect too and must not import
the worker; the worker imports it from here.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from celery import Celery
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from contact_exports_client.sentinel import master_name, sentinel_master, uses_sentinel

#: The files for every ``rediss://`` connection: the CA that signed the server's certificate
#: (unset: the system's trusted CAs), and a client certificate and key for servers that ask for
#: one. The workers, this helper and the command line read the same variables.
REDIS_CA_FILE = "REDIS_CA_FILE"
REDIS_CERT_FILE = "REDIS_CERT_FILE"
REDIS_KEY_FILE = "REDIS_KEY_FILE"
#: ``true``: behind ``sentinel://`` URLs everything speaks TLS only (the Sentinels, and the
#: master they name), verified with the same files. Sentinel URLs have no TLS scheme of their own.
REDIS_SENTINEL_TLS = "REDIS_SENTINEL_TLS"
#: The words pydantic (the workers' settings) reads as true, so both sides agree.
TRUE_WORDS = ("1", "on", "t", "true", "y", "yes")
#: The URL schemes on which these files are used: TLS only, never on plain ``redis://``.
TLS_SCHEMES = ("rediss",)


@dataclass(frozen=True)
class RedisTls:
    """How to reach a ``rediss://`` Redis: the CA to trust, a client certificate if any.

    The server's certificate is always verified (``ssl_cert_reqs=required``, host name checked).
    A URL's own ``ssl_ca_certs``/``ssl_certfile``/``ssl_keyfile`` query parameters win over these
    for that URL (redis-py, kombu and Celery's backend all read them).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: The Sentinels of ``sentinel://`` URLs, and the servers they name, speak TLS.
    sentinel: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisTls:
        env = os.environ if environ is None else environ
        return cls(
            env.get(REDIS_CA_FILE) or None,
            env.get(REDIS_CERT_FILE) or None,
            env.get(REDIS_KEY_FILE) or None,
            env.get(REDIS_SENTINEL_TLS, "").strip().lower() in TRUE_WORDS,
        )

    def options(self, url: str) -> dict[str, Any] | None:
        """redis-py's ``ssl_*`` keyword arguments for ``url`` (also Celery's ``broker_use_ssl``
        and ``redis_backend_use_ssl``); None for a URL that is not ``rediss://``, or a
        ``sentinel://`` one without ``sentinel``. For a Sentinel URL they are the master's."""
        if not (uses_tls(url) or (self.sentinel and uses_sentinel(url))):
            return None
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if self.ca_file:
            options["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            options["ssl_certfile"] = self.cert_file
        if self.key_file:
            options["ssl_keyfile"] = self.key_file
        return options

    def sentinel_options(self, url: str) -> dict[str, Any] | None:
        """redis-py's keyword arguments for the Sentinels themselves of a ``sentinel://`` URL
        (kombu's and Celery's ``sentinel_kwargs``), None unless they speak TLS: without them
        redis-py would ask the Sentinels in plain TCP."""
        options = self.options(url) if uses_sentinel(url) else None
        return None if options is None else {"ssl": True, **options}


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme.lower() in TLS_SCHEMES


def mask_url(url: str) -> str:
    """``url`` fit for a message or a log: any password is ``***`` (in the user part or the query).

    ``rediss://user:secret@host:6380/0`` becomes ``rediss://user:***@host:6380/0``; each part of
    a Sentinel URL (``sentinel://…;sentinel://…``) is masked alone.
    """
    if ";" in url:
        return ";".join(mask_url(part) for part in url.split(";"))
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return "<a malformed URL>"
    netloc = parts.netloc
    if password is not None:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() == "password" for key, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*/"
            )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


@dataclass(frozen=True)
class TlsFailure:
    """Why a connection to a ``rediss://`` Redis failed in TLS, and what the operator can do."""

    #: The server's certificate is not trusted (else the handshake itself failed).
    untrusted: bool
    #: What the TLS library said.
    detail: str
    #: The setting to change.
    fix: str


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what caused it, outermost first (redis-py wraps the socket's error)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def tls_failure(error: BaseException) -> TlsFailure | None:
    """The TLS failure at the bottom of ``error``, or None when it failed otherwise: down,
    refused, timed out."""
    for current in causes(error):
        if isinstance(current, ssl.SSLCertVerificationError):
            detail = current.verify_message or str(current)
            return TlsFailure(True, detail, "set REDIS_CA_FILE to the CA that signed it")
        if isinstance(current, ssl.SSLError):
            detail = str(current.reason or current)
            if "CERTIFICATE_REQUIRED" in detail.upper():
                fix = (
                    "the server wants a client certificate: set REDIS_CERT_FILE and REDIS_KEY_FILE"
                )
            else:
                fix = "rediss:// needs the server's TLS port, redis:// its plain one"
            return TlsFailure(False, detail, fix)
    return None


def reconnecting(attempts: int) -> dict[str, Any]:
    """redis-py options under which each command tries ``attempts`` times across a dropped
    connection (backoff 0.1 s doubling to 2 s): through a restart, or a failover, where each new
    connection asks the Sentinels for the master again."""
    return {
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), attempts),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }


def redis_at(
    url: str, tls: RedisTls | None = None, *, master: str | None = None, **kwargs: Any
) -> redis.Redis:
    """A redis-py client for ``url``, over TLS with ``tls`` (default: REDIS_CA_FILE, ...) when it
    is a ``rediss://`` URL; the master the Sentinels name ``master`` (default:
    BROKER_MASTER_NAME) for a ``sentinel://`` URL (``contact_exports_client.sentinel``);
    exactly ``Redis.from_url(url, **kwargs)`` for any other."""
    tls = tls if tls is not None else RedisTls.from_env()
    if uses_sentinel(url):
        return sentinel_master(
            url, master or master_name(), tls.options(url), tls.sentinel_options(url), **kwargs
        )
    options = tls.options(url)
    return redis.Redis.from_url(url, **(options or {}), **kwargs)


def use_redis_tls(app: Celery, broker: str, backend: str, tls: RedisTls) -> None:
    """Configure ``app``'s broker and result backend (at these URLs) for ``tls`` where they are
    ``rediss://`` (or Sentinel URLs with ``tls.sentinel``): kombu would otherwise connect
    without verifying the server at all."""
    broker_ssl = tls.options(broker)
    backend_ssl = tls.options(backend)
    if broker_ssl:
        app.conf.broker_use_ssl = broker_ssl
    if backend_ssl:
        app.conf.redis_backend_use_ssl = backend_ssl
    broker_sentinels = tls.sentinel_options(broker)
    backend_sentinels = tls.sentinel_options(backend)
    if broker_sentinels:
        app.conf.broker_transport_options = {
            **(app.conf.broker_transport_options or {}),
            "sentinel_kwargs": broker_sentinels,
        }
    if backend_sentinels:
        app.conf.result_backend_transport_options = {
            **(app.conf.result_backend_transport_options or {}),
            "sentinel_kwargs": backend_sentinels,
        }
    app.redis_tls = tls  # type: ignore[attr-defined]  # read back by jobs_redis
