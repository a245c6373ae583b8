"""Cancelling in the job store: atomic against completing, final, and never swept again.
The cancel on a real worker is tests/integration/test_cancel_with_real_worker.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from contact_exports_client.keys import job_lease_key
from tests.unit.factories import a_job
from workers.export.cancel import cancel_job
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


class Results:
    """Where the cancel stores the caller's FAILURE: kept, to count what each worker did."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, str]] = []

    def store_result(self, task_id: str, result: Any, state: str, *_: Any, **__: Any) -> None:
        self.stored.append((task_id, state))


class Sender:
    def send_task(self, name: str, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no webhook was asked for")


def test_every_worker_hearing_one_cancel_request_answers_cancelled_and_one_acts(
    store: JobStore,
) -> None:
    """The remote-control command reaches every worker: the first to answer may be one that
    found the job cancelled already, by this very request."""
    store.open(a_job("shared"), {"export": {}})
    results = Results()
    answers = [
        cancel_job(store, results, Sender(), {"job_id": "shared"}, request="req-1")
        for _ in range(3)  # three workers, one after another
    ]
    assert [a["outcome"] for a in answers] == ["cancelled"] * 3
    assert len(results.stored) == 1 and results.stored[0][1] == "FAILURE"  # one acted
    # Another request, or the task (no request), finds it cancelled already.
    later = cancel_job(store, results, Sender(), {"job_id": "shared"}, request="req-2")
    assert later["outcome"] == "cancelled already"
    assert cancel_job(store, results, Sender(), {"job_id": "shared"})["outcome"] == (
        "cancelled already"
    )
