"""Cancelling in the job store: atomic against completing, final, and never swept again.
The cancel on a real worker is tests/integration/test_cancel_with_real_worker.py."""

from __future__ import annotations

import time

import pytest
import redis

from contact_exports_client.keys import job_lease_key
from tests.unit.factories import a_job
from workers.state.jobs import JobState, JobStore


@pytest.fixture
def store(r: redis.Redis) -> JobStore:
    return JobStore(r)


def test_a_job_on_its_way_is_cancelled_once(store: JobStore, r: redis.Redis) -> None:
    job = a_job("going")
    store.open(job, {"export": {}})
    store.lease("going", "download").acquire()
    assert store.cancel("going") == "cancelled"
    assert store.cancelled("going")
    assert store.record("going")["state"] == "cancelled"
    assert not r.exists(job_lease_key("going", "download"))  # the download loses its lease
    assert store.cancel("going") == "cancelled already"


def test_a_cancelled_job_does_not_complete(store: JobStore) -> None:
    store.open(a_job("late"), {"export": {}})
    store.cancel("late")
    assert store.save_result("late", {"rows": 1}) is False
    record = store.record("late")
    assert record["state"] == "cancelled" and "result" not in record


def test_a_completed_job_is_not_cancelled(store: JobStore) -> None:
    store.open(a_job("done"), {"export": {}})
    assert store.save_result("done", {"rows": 1}) is True
    assert store.cancel("done") == "completed"
    assert not store.cancelled("done")
    assert store.result("done") == {"rows": 1}


def test_a_failed_or_unknown_job_is_left_alone(store: JobStore) -> None:
    store.open(a_job("broke"), {"export": {}})
    store.fail("broke", "download", RuntimeError("x"))
    assert store.cancel("broke") == "failed"
    assert store.cancel("nobody") == "unknown"
    assert store.record("nobody") == {}


def test_a_late_step_does_not_reopen_a_cancelled_job(store: JobStore) -> None:
    store.open(a_job("quiet"), {"export": {}})
    store.cancel("quiet")
    store.set_state("quiet", JobState.DOWNLOADING)
    assert store.record("quiet")["state"] == "cancelled"


def test_the_janitor_never_sends_a_cancelled_job_again(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.open(a_job("old"), {"export": {}})
    store.cancel("old")
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert store.stale(older_than=60) == []
