"""Checks a worker makes once at start, before Celery connects: what no retry can fix stops it
here with a message naming the variable, instead of a retry loop.
"""

from __future__ import annotations

import logging
import ssl

import redis

from contact_exports_client.redis_tls import RedisTls, mask_url
from workers.exceptions import ConfigurationError
from workers.settings import Settings

log = logging.getLogger(__name__)

#: Seconds the start-up check waits for each Redis: a Redis that is down is not fatal anyway.
REDIS_CHECK_TIMEOUT = 3.0


def check_redis(settings: Settings) -> None:
    """PING each distinct Redis once, before Celery connects; stop the worker on what no retry
    fixes: credentials refused (WRONGPASS, NOAUTH, NOPERM) or a TLS certificate not trusted.

    A Redis that is down or unreachable is only logged: Celery then retries its connection as
    always (``broker_connection_retry_on_startup``). Messages name the variable and show the URL
    with its password masked.
    """
    tls = settings.redis_tls
    for url, names in settings.redis_urls().items():
        if not url.lower().startswith(("redis://", "rediss://")):
            continue  # sentinel:// and others: Celery's own connection handles them
        problem = redis_problem(url, tls, " / ".join(names))
        if problem is not None:
            raise ConfigurationError(problem)


def redis_problem(url: str, tls: RedisTls, name: str) -> str | None:
    """The fatal problem of the Redis at ``url``, for ``name``; None when it answers or is
    merely unreachable (logged)."""
    where = mask_url(url)
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_CHECK_TIMEOUT,
            socket_timeout=REDIS_CHECK_TIMEOUT,
            **(tls.options(url) or {}),
        )
    except ValueError as error:
        return f"{name}: {where} is not a usable Redis URL ({error})"
    try:
        client.ping()
    except redis.AuthenticationError as error:
        return (
            f"{name}: Redis at {where} refused the credentials (WRONGPASS/NOAUTH: {error}); "
            "check the user name and password in the URL"
        )
    except redis.exceptions.NoPermissionError as error:
        return (
            f"{name}: the Redis user at {where} may not run PING (NOPERM: {error}); give it the "
            "ACL in docs/configuration.md"
        )
    except (redis.ConnectionError, redis.TimeoutError) as error:
        return _connection_problem(error, name, where)
    except redis.RedisError as error:
        log.warning("%s: Redis at %s answered PING with an error: %s", name, where, error)
    finally:
        client.close()
    return None


def _connection_problem(error: redis.RedisError, name: str, where: str) -> str | None:
    cause = _tls_cause(error)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"{name}: the server's TLS certificate at {where} is not trusted "
            f"({cause.verify_message}); set REDIS_CA_FILE to the CA that signed it"
        )
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason or str(cause)
        if "CERTIFICATE_REQUIRED" in str(reason).upper():
            fix = "the server wants a client certificate: set REDIS_CERT_FILE and REDIS_KEY_FILE"
        else:
            fix = "rediss:// needs the server's TLS port, redis:// its plain one"
        return f"{name}: the TLS handshake with {where} failed ({reason}); {fix}"
    if isinstance(cause, ConnectionResetError) and not where.startswith("rediss"):
        log.warning("%s: %s reset the connection: does it speak TLS (rediss://)?", name, where)
    log.warning(
        "%s: Redis at %s is not reachable yet (%s); the worker keeps trying", name, where, error
    )
    return None


def _tls_cause(error: BaseException) -> BaseException | None:
    """The underlying OSError (an ssl.SSLError among them) redis-py wrapped, if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            return current
        current = current.__cause__ or current.__context__
    return None
