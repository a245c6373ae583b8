"""Guards around kombu 5.7 failures that otherwise kill the worker on a Redis restart.

When the broker connection drops, kombu closes the old channel, but work that was in flight
still uses it: putting unacknowledged messages back on their queue, or acknowledging a task that
finished meanwhile. On a closed channel those calls fail with an AttributeError, which escapes as
"Unrecoverable error" and the worker exits. Here a closed channel answers with a connection error
instead — the kind kombu and Celery already expect and log — and the messages involved stay in
Redis's unacked hash, where the periodic visibility sweep restores them
(BROKER_VISIBILITY_TIMEOUT, BROKER_RESTORE_INTERVAL); the job records make the repeat harmless.
``tests/integration/test_redis_restart.py`` fails without these guards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

_original_restore = kombu_redis.QoS.restore_unacked
_original_conn_or_acquire = kombu_redis.Channel.conn_or_acquire


def _restore_unacked(self: Any, client: Any = None) -> Any:
    try:
        return _original_restore(self, client)
    except (AttributeError, redis.ConnectionError):
        log.warning(
            "broker connection gone while restoring unacknowledged messages; "
            "they stay in Redis and return after the visibility timeout"
        )
        return None


@contextmanager
def _conn_or_acquire(self: Any, client: Any = None) -> Iterator[Any]:
    if client is None and getattr(self, "connection", None) is None:
        raise redis.ConnectionError("broker channel already closed")
    with _original_conn_or_acquire(self, client) as acquired:
        yield acquired


def install() -> None:
    kombu_redis.QoS.restore_unacked = _restore_unacked  # type: ignore[method-assign]
    kombu_redis.Channel.conn_or_acquire = _conn_or_acquire  # type: ignore[method-assign]
