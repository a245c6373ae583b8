"""Redis Sentinel for everyone who talks to the service's Redis: the workers' own client (job
records, leases, the limiter, tokens), the client helper and the command line follow the master
that the Sentinels name, as Celery's broker and result backend do.

URLs are kombu's: ``sentinel://[user:password@]host:port[/db]`` for each Sentinel, joined by
``;`` (``sentinel://s1:26379/0;sentinel://s2:26379/0;sentinel://s3:26379/0``). The user and
password are the master's (the first part that has them); the database is the first one given.
The master's name comes from ``BROKER_MASTER_NAME``, the variable Celery's side already reads.
With ``REDIS_SENTINEL_TLS=true`` the Sentinels and the servers they name are reached over TLS
only, verified like ``rediss://`` (``contact_exports_client.redis_tls``). Sentinels that need a
password themselves are not supported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from celery import Celery
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelManagedConnection

#: The master's name in the Sentinels' configuration (``sentinel monitor <name> …``).
BROKER_MASTER_NAME = "BROKER_MASTER_NAME"
SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
#: How a caller on Sentinel URLs rides out a failover (the Sentinels take the master for down
#: after their down-after-milliseconds, then elect and promote: seconds, up to about 30 s):
#: publishing retries for about 35 s, where Celery's default gives up after about a second.
FAILOVER_PUBLISH_RETRY = {
    "max_retries": 20,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 2.0,
}
#: Attempts of one Redis command across a failover (backoff 0.1 s doubling to 2 s: about 30 s).
FAILOVER_COMMAND_RETRIES = 20


def uses_sentinel(url: str) -> bool:
    return urlsplit(url.split(";", 1)[0].strip()).scheme.lower() == SENTINEL_SCHEME


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``sentinel://`` URL: where the Sentinels are, and how to talk to the master."""

    sentinels: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """Raises ValueError naming what is wrong (never showing the password)."""
        sentinels: list[tuple[str, int]] = []
        db: int | None = None
        username: str | None = None
        password: str | None = None
        for part in (piece.strip() for piece in url.split(";")):
            if not part:
                continue
            split = urlsplit(part)
            if split.scheme.lower() != SENTINEL_SCHEME:
                raise ValueError(
                    f"every part of a Sentinel URL must be sentinel://, not {split.scheme}://"
                )
            if not split.hostname:
                raise ValueError("a sentinel:// part names no host")
            sentinels.append((split.hostname, split.port or DEFAULT_SENTINEL_PORT))
            if password is None and split.password is not None:
                username = unquote(split.username) if split.username else None
                password = unquote(split.password)
            path = split.path.strip("/")
            if db is None and path:
                if not path.isdigit():
                    raise ValueError(f"a Sentinel URL's database must be a number, not {path!r}")
                db = int(path)
        if not sentinels:
            raise ValueError("a Sentinel URL names no Sentinel")
        return cls(tuple(sentinels), db or 0, username, password)


def master_name(environ: Mapping[str, str] | None = None) -> str:
    """BROKER_MASTER_NAME, or ValueError: without it a ``sentinel://`` URL leads nowhere."""
    name = (os.environ if environ is None else environ).get(BROKER_MASTER_NAME, "").strip()
    if not name:
        raise ValueError(
            f"a sentinel:// URL needs {BROKER_MASTER_NAME}, the master's name in the Sentinels' "
            "configuration"
        )
    return name


class FollowingConnection(SentinelManagedConnection):
    """A master's connection that asks the Sentinels where the master is every time it opens.

    redis-py 8.2's SentinelManagedConnection asks them only in ``connect()``, but a command that
    finds its connection closed reopens it through ``connect_check_health()``, at the address
    it last had: after a failover every retry knocked on the dead master until the retries ran
    out (tests/integration/test_sentinel_failover_with_real_workers.py caught it).
    """

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self._sock and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )


class FollowingSSLConnection(FollowingConnection, redis.SSLConnection):
    """FollowingConnection over TLS (as redis-py's SentinelManagedSSLConnection is to its own)."""


class ExplainingSentinel(Sentinel):
    """A Sentinel client whose MasterNotFoundError carries, as its cause, why the first Sentinel
    could not be asked (redis-py keeps only the text): an untrusted TLS certificate is then told
    apart from a Sentinel that is merely down (``redis_tls.tls_failure`` reads the cause)."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        try:
            address: tuple[str, int] = super().discover_master(service_name)
        except MasterNotFoundError:
            first = self.sentinels[0]
            options = first.connection_pool.connection_kwargs
            where = f"{options.get('host')}:{options.get('port')}"
            try:
                first.ping()
            except redis.RedisError as cause:
                raise MasterNotFoundError(
                    f"no Sentinel named a master {service_name!r}; the one at {where}: {cause}"
                ) from cause
            raise MasterNotFoundError(
                f"no Sentinel named a master {service_name!r} that is up (the one at {where} "
                "answers: a failover under way, or not the name in its configuration)"
            ) from None
        return address


def sentinel_master(
    url: str,
    name: str,
    master_tls: dict[str, Any] | None = None,
    sentinel_tls: dict[str, Any] | None = None,
    **kwargs: Any,
) -> redis.Redis:
    """A client of the master that the Sentinels at ``url`` name ``name``.

    It asks the Sentinels for the master when it opens a connection, so after a failover the
    next connection (redis-py reconnects after a connection error, and on the READONLY answer a
    demoted master gives) reaches the promoted replica. ``kwargs`` are the master's connection
    options; the Sentinels are asked with the same socket timeouts. ``master_tls`` and
    ``sentinel_tls`` are the ``ssl*`` options (``RedisTls.options`` and ``sentinel_options``)
    when the master and the Sentinels speak TLS.
    """
    parsed = SentinelUrl.parse(url)
    sentinel_options = {key: value for key, value in kwargs.items() if key.startswith("socket_")}
    sentinels = ExplainingSentinel(
        list(parsed.sentinels), sentinel_kwargs={**sentinel_options, **(sentinel_tls or {})}
    )
    client: redis.Redis = sentinels.master_for(
        name,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        connection_class=FollowingSSLConnection if master_tls else FollowingConnection,
        **(master_tls or {}),
        **kwargs,
    )
    return client


def use_sentinel(app: Celery, broker: str, backend: str, name: str | None = None) -> None:
    """Give a caller's ``app`` the master's name where its broker and result backend are Sentinel
    URLs (Celery reads it from the transport options, never from the URL), and let its
    publishing ride out a failover (FAILOVER_PUBLISH_RETRY)."""
    if uses_sentinel(broker):
        app.conf.broker_transport_options = {
            **(app.conf.broker_transport_options or {}),
            "master_name": name or master_name(),
        }
        app.conf.task_publish_retry_policy = FAILOVER_PUBLISH_RETRY
    if uses_sentinel(backend):
        app.conf.result_backend_transport_options = {
            **(app.conf.result_backend_transport_options or {}),
            "master_name": name or master_name(),
        }
