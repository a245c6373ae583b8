"""Checks a worker makes once at start, before Celery connects: what no retry can fix stops it
here with a message naming the variable, instead of a retry loop.
"""

from __future__ import annotations

import logging

import redis

from contact_exports_client.redis_tls import RedisTls, causes, mask_url, redis_at, tls_failure
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
        if not url.lower().startswith(("redis://", "rediss://", "sentinel://")):
            continue  # unix:// and others: Celery's own connection handles them
        problem = redis_problem(url, tls, " / ".join(names), settings.broker_master_name)
        if problem is not None:
            raise ConfigurationError(problem)


def redis_problem(url: str, tls: RedisTls, name: str, master: str | None = None) -> str | None:
    """The fatal problem of the Redis at ``url``, for ``name``; None when it answers or is
    merely unreachable (logged). A Sentinel URL is asked for ``master`` first."""
    where = mask_url(url)
    try:
        client = redis_at(
            url,
            tls,
            master=master,
            socket_connect_timeout=REDIS_CHECK_TIMEOUT,
            socket_timeout=REDIS_CHECK_TIMEOUT,
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
    failure = tls_failure(error)
    if failure is not None:
        if failure.untrusted:
            what = f"the server's TLS certificate at {where} is not trusted"
        else:
            what = f"the TLS handshake with {where} failed"
        return f"{name}: {what} ({failure.detail}); {failure.fix}"
    reset = any(isinstance(cause, ConnectionResetError) for cause in causes(error))
    if reset and not where.startswith("rediss"):
        log.warning("%s: %s reset the connection: does it speak TLS (rediss://)?", name, where)
    log.warning(
        "%s: Redis at %s is not reachable yet (%s); the worker keeps trying", name, where, error
    )
    return None


def check_s3_signer(has_crt: bool | None = None) -> None:
    """Stop the worker where botocore would sign with its CRT signer.

    With ``awscrt`` installed (``boto3[crt]`` pulls it in), botocore signs S3 requests with the
    CRT's SigV4 instead of its own, and that signer reads a request body as bytes: the worker's
    streamed uploads (``workers.s3.streamput``), whose body is a stream, then fail on every
    export. Found by installing awscrt beside the test suite; stopping at start says why.
    """
    if has_crt is None:
        from botocore.compat import HAS_CRT

        has_crt = bool(HAS_CRT)
    if has_crt:
        raise ConfigurationError(
            "awscrt is installed, so botocore would sign S3 requests with its CRT signer, which "
            "cannot sign this worker's streamed uploads; uninstall awscrt, or set "
            "BOTO_DISABLE_CRT=true (botocore then keeps its own signer)"
        )
