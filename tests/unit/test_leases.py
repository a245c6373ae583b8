"""Leases against a real Redis, plain and over TLS as the service's ACL user
(tests/unit/conftest.py), on the key a job's download lease uses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis

from contact_exports_client.keys import job_lease_key
from workers.state.leases import Lease, LeaseHeld

KEY = job_lease_key("job-1", "download")


def test_second_holder_is_refused_while_the_first_lives(r: redis.Redis) -> None:
    with Lease(r, KEY, ttl=5):
        with pytest.raises(LeaseHeld) as held:
            Lease(r, KEY, ttl=5).acquire()
        assert 0 < held.value.ttl <= 5
    Lease(r, KEY, ttl=5).acquire()  # released: free again


def test_heartbeat_keeps_a_short_lease_alive(r: redis.Redis) -> None:
    """Each heartbeat resets the TTL: seen four times over, the lease outlives its TTL.

    The TTL is a second, not a tenth: with a shorter one a loaded 2-core machine can stall the
    heartbeat thread past it (CI saw that with 0.3 s), which tests the scheduler, not the lease.
    """
    lease = Lease(r, KEY, ttl=1.0)
    with lease:
        acquired = time.monotonic()
        for _ in range(4):
            wait_for(lambda: r.pttl(KEY) < 950, what="the TTL running down")
            before = r.pttl(KEY)
            wait_for(lambda before=before: r.pttl(KEY) > before, what="a renewal")
            assert r.get(KEY) == lease.holder.encode()
        assert time.monotonic() - acquired > 1.0  # past the TTL: only renewals kept it
    assert r.get(KEY) is None


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        threading.Event().wait(0.005)


def test_a_dead_holders_lease_expires(r: redis.Redis) -> None:
    dead = Lease(r, KEY, ttl=0.2)
    r.set(KEY, dead.holder, px=200)  # held, but no heartbeat: its process is gone
    with pytest.raises(LeaseHeld):
        Lease(r, KEY, ttl=0.2).acquire()
    assert r.pttl(KEY) <= 200
    r.pexpire(KEY, 1)
    threading.Event().wait(0.01)
    Lease(r, KEY, ttl=0.2).acquire()


def test_release_never_deletes_someone_elses_lease(r: redis.Redis) -> None:
    mine = Lease(r, KEY, ttl=5)
    mine.acquire()
    r.set(KEY, "someone-else")  # it expired and another worker took it
    mine.release()
    assert r.get(KEY) == b"someone-else"


def test_losing_the_lease_is_noticed(r: redis.Redis) -> None:
    lease = Lease(r, KEY, ttl=0.3)
    with lease:
        r.set(KEY, "thief")
        assert lease.lost.wait(2)
