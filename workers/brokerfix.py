"""A guard around one kombu (5.7) failure that otherwise kills the worker on a Redis restart.

When the broker connection drops, kombu closes the channel and tries to put unacknowledged
messages back on their queue through a connection that is already gone; the resulting
AttributeError escapes as "Unrecoverable error" and the worker exits. The messages are still in
Redis's unacked hash, and the periodic visibility sweep restores them (BROKER_VISIBILITY_TIMEOUT,
BROKER_RESTORE_INTERVAL), so the right move is to leave them there and let the worker reconnect.
``tests/integration/test_redis_restart.py`` fails without this guard.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

_original = kombu_redis.QoS.restore_unacked


def _restore_unacked(self: Any, client: Any = None) -> Any:
    try:
        return _original(self, client)
    except AttributeError:
        log.warning(
            "broker connection gone while restoring unacknowledged messages; "
            "they stay in Redis and return after the visibility timeout"
        )
        return None


def install() -> None:
    kombu_redis.QoS.restore_unacked = _restore_unacked  # type: ignore[method-assign]
