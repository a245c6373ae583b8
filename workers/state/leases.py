"""Leases: "this step of this job is being worked on, by me, right now".

At-least-once delivery can hand the same step to two workers at once (a message that outlived
the visibility timeout, a broker reconnect). A lease in Redis, renewed by a heartbeat thread
while the step runs, lets the second delivery see that the first is alive and step back; when
the holder dies its heartbeat stops and the lease expires, so the next delivery proceeds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from types import TracebackType

import redis

from workers.exceptions import LeaseHeld

#: Seconds a lease lives without a heartbeat: how long a dead holder blocks the next delivery.
DEFAULT_TTL_SECONDS = 30.0
#: Heartbeats per TTL; three means two can be missed before the lease lapses.
HEARTBEATS_PER_TTL = 3

# Renew or release only a lease we still hold: compare the holder, then act, atomically.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def holder_id() -> str:
    """Unique per attempt: a redelivered message must not inherit its dead sender's lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Lease:
    """``with Lease(r, key):`` holds the lease and renews it until the block ends."""

    def __init__(self, client: redis.Redis, key: str, *, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self._redis = client
        self.key = key
        self.holder = holder_id()
        self._ttl_ms = int(ttl * 1000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()

    def acquire(self) -> None:
        if not self._redis.set(self.key, self.holder, nx=True, px=self._ttl_ms):
            remaining = self._redis.pttl(self.key)
            raise LeaseHeld(self.key, max(remaining, 0) / 1000 if remaining else 0.0)
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = self._ttl_ms / 1000 / HEARTBEATS_PER_TTL
        while not self._stop.wait(interval):
            try:
                renewed = self._redis.eval(_RENEW, 1, self.key, self.holder, self._ttl_ms)
            except redis.RedisError:
                continue  # Redis blinked; the next beat tries again before the TTL runs out.
            if not renewed:
                self.lost.set()
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(redis.RedisError):  # It expires on its own.
            self._redis.eval(_RELEASE, 1, self.key, self.holder)

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
