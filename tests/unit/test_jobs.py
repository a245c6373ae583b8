"""The job record against a real Redis (db 15, flushed around each test)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from contact_exports_client.keys import DEAD_LETTERS_KEY
from contact_exports_client.ledger import record_submission
from tests.unit.factories import a_job
from workers.exceptions import ActivityFailed, ConstantContactError, TransientError
from workers.export.job import ActivityRef, Job
from workers.export.request import parse_job_request
from workers.retry import RetryPolicy
from workers.state.jobs import JobState, JobStore


@pytest.fixture
def store(r: redis.Redis) -> JobStore:
    return JobStore(r)


def job(job_id: str = "j1") -> Job:
    return a_job(job_id)


def test_the_worker_takes_over_a_record_its_caller_wrote(store: JobStore, r: redis.Redis) -> None:
    record_submission(r, "j1", "r1", {"export": {}})
    assert store.open(job(), {"export": {}, "job_id": "j1"})  # new to the workers
    record = store.record("j1")
    assert (record["account"], record["bucket"], record["key"]) == ("default", "b", "k.csv")
    assert float(record["deadline"]) == pytest.approx(job().deadline, abs=5)


def test_opening_twice_keeps_the_first_record(store: JobStore) -> None:
    store.open(job(), {"export": {}, "job_id": "j1"})
    store.set_state("j1", JobState.POLLING)
    store.open(job(), {"export": {"status": "active"}, "job_id": "j1"})
    record = store.record("j1")
    assert record["state"] == "polling"
    assert record["kwargs"] == '{"export": {}, "job_id": "j1"}'


def test_activity_is_remembered_and_owned(store: JobStore) -> None:
    assert store.activity("j1") is None
    store.remember_activity("j1", "a1", "/v3/activities/a1", "/v3/contact_exports/f1")
    assert store.activity("j1") == ActivityRef(
        activity_id="a1",
        self_href="/v3/activities/a1",
        results_href="/v3/contact_exports/f1",
    )
    assert store.owns_activity("a1") and not store.owns_activity("a2")


class BreaksAfter:
    """A Redis client whose connection breaks after ``round_trips`` requests (a command, or a
    pipeline's execute), as it does for a process killed between two of them."""

    def __init__(self, client: redis.Redis, round_trips: int) -> None:
        self._client = client
        self._left = round_trips

    def _trip(self) -> None:
        if self._left == 0:
            raise redis.ConnectionError("killed")
        self._left -= 1

    def pipeline(self) -> Any:
        pipe = self._client.pipeline()
        execute = pipe.execute

        def counted() -> Any:
            self._trip()
            return execute()

        pipe.execute = counted  # type: ignore[method-assign,assignment]
        return pipe

    def __getattr__(self, name: str) -> Any:
        command = getattr(self._client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._trip()
            return command(*args, **kwargs)

        return counted


def test_an_activity_is_owned_only_together_with_its_job_record(r: redis.Redis) -> None:
    """Owned but unrecorded, it would be skipped by the lost-create search and posted again."""
    broken = JobStore(BreaksAfter(r, 0))  # type: ignore[arg-type]
    with pytest.raises(redis.ConnectionError):
        broken.remember_activity("j1", "a1", "/v3/activities/a1", "/v3/contact_exports/f1")
    assert not JobStore(r).owns_activity("a1")
    assert JobStore(r).activity("j1") is None
    # One round trip is all it takes: both land, or neither.
    JobStore(BreaksAfter(r, 1)).remember_activity(  # type: ignore[arg-type]
        "j1", "a1", "/v3/activities/a1", "/v3/contact_exports/f1"
    )
    assert JobStore(r).owns_activity("a1")
    assert JobStore(r).activity("j1") is not None


def test_post_window_opens_and_closes(store: JobStore) -> None:
    assert store.post_window("j1") is None
    store.mark_posting("j1")
    started, ended = store.post_window("j1") or (0.0, 0.0)
    assert started > 0 and ended is None
    store.mark_posted("j1")
    _, ended = store.post_window("j1") or (0.0, None)
    assert ended is not None and ended >= started


def test_failed_job_is_a_dead_letter_that_can_be_reopened(store: JobStore) -> None:
    store.open(job(), {"export": {}, "job_id": "j1"})
    store.remember_activity("j1", "a1", "/v3/activities/a1", None)
    store.count_attempt("j1", "poll")
    store.fail("j1", "contact_exports.poll_activity", ActivityFailed("ended failed: bad id"))
    [letter] = store.dead_letters()
    assert letter["job_id"] == "j1"
    assert letter["error_type"] == "ActivityFailed"
    assert letter["attempts:poll"] == "1"
    assert store.reopen("j1") == {"export": {}, "job_id": "j1"}
    assert store.dead_letters() == []
    assert store.activity("j1") is None
    assert store.record("j1")["reruns"] == "1"
    with pytest.raises(KeyError):
        store.reopen("j1")


def test_a_reopened_job_gets_its_full_retries_again(store: JobStore) -> None:
    """Guards 550567c's reopen, which kept ``attempts:failures:<stage>``: a rerun started past
    the retry limit and gave up at its first transient failure. The counts of runs stay."""
    policy = RetryPolicy(initial=1, cap=1, max_attempts=2)
    error = TransientError("503")
    store.open(job(), {"export": {}, "job_id": "j1"})
    store.count_attempt("j1", "download")
    failures = [store.count_failure("j1", "downloading") for _ in range(3)]
    assert failures == [1, 2, 3] and policy.gives_up(error, failures[-1])
    store.fail("j1", "contact_exports.download_csv", ConstantContactError("gave up after 3"))
    store.reopen("j1")
    assert store.count_failure("j1", "downloading") == 1
    assert not policy.gives_up(error, 1)
    assert store.record("j1")["attempts:download"] == "1"


def test_reopening_a_job_leaves_every_other_key_alone(store: JobStore, r: redis.Redis) -> None:
    """Guards 550567c's reopen, which also deleted ``contact_exports:job:<job_id>:create``: job
    ids may contain ``:``, so that is the record of the job ``<job_id>:create``. Reopening
    changes the job's own record and the dead letters, nothing else."""
    other = "nightly:create"
    assert parse_job_request({"export": {}, "job_id": other}).job_id == other
    store.open(job("nightly"), {"export": {}, "job_id": "nightly"})
    store.open(job(other), {"export": {}, "job_id": other})
    store.add_upload("nightly", "u1")
    store.fail("nightly", "contact_exports.create_export", ActivityFailed("ended failed"))
    keys, other_record = set(r.scan_iter()), store.record(other)
    store.reopen("nightly")
    assert set(r.scan_iter()) == keys - {DEAD_LETTERS_KEY.encode()}  # its one letter is gone
    assert store.record(other) == other_record
    assert store.uploads("nightly") == ["u1"]


def test_uploads_are_tracked_until_dropped(store: JobStore) -> None:
    store.add_upload("j1", "u2")
    store.add_upload("j1", "u1")
    assert store.uploads("j1") == ["u1", "u2"]
    store.drop_upload("j1", "u1")
    assert store.uploads("j1") == ["u2"]


def test_result_marks_the_job_completed(store: JobStore) -> None:
    store.save_result("j1", {"rows": 3})
    assert store.result("j1") == {"rows": 3}
    assert store.record("j1")["state"] == "completed"


def test_a_seal_stays_owed_until_sealed_and_is_found_only_once_overdue(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_result("j1", {"rows": 3}, seal={"key": "k.csv"})
    store.save_result("j2", {"rows": 4})  # nothing owed: adopted already sealed
    assert store.owed_seals(older_than=60) == []  # just asked for: its message may be queued
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert store.owed_seals(older_than=60) == [("j1", {"key": "k.csv"})]
    store.seal_requested("j1")  # the janitor asked again: another wait before the next time
    assert store.owed_seals(older_than=60) == []
    store.sealed("j1")
    monkeypatch.setattr(time, "time", lambda: later + 120)
    assert store.owed_seals(older_than=60) == []
    assert "seal" not in store.record("j1") and "sealed_at" in store.record("j1")


def test_a_late_duplicate_does_not_reopen_an_ended_job(store: JobStore) -> None:
    store.save_result("j1", {"rows": 3})
    store.set_state("j1", JobState.DOWNLOADING)
    assert store.record("j1")["state"] == "completed"


def test_a_job_id_with_colons_is_found_by_the_janitors_scans_and_shares_no_key(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job ids may contain ``:`` (docs/contract.md §1.1). Before, the keys under a record were
    ``<record>:uploads`` and ``<record>:lease:<step>``: the scans skipped every id with a ``:``
    (so a lost job ``crm:2026`` was never sent again), and the job ``x:uploads`` had the same key
    as the open uploads of the job ``x``."""
    stale, owed = "crm:2026-11-26", "x:uploads"
    for job_id in (stale, "x", owed):
        assert parse_job_request({"export": {}, "job_id": job_id}).job_id == job_id
    store.open(job(stale), {"export": {}, "job_id": stale})
    store.open(job("x"), {"export": {}, "job_id": "x"})
    store.add_upload("x", "u1")
    store.save_result(owed, {"rows": 1}, seal={"key": "k.csv"})
    assert store.uploads("x") == ["u1"] and store.result(owed) == {"rows": 1}
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    assert {record["job_id"] for record in store.stale(older_than=60)} == {stale, "x"}
    assert store.owed_seals(older_than=60) == [(owed, {"key": "k.csv"})]


def test_keys_of_the_layout_before_an_upgrade_do_not_stop_the_janitors_scans(
    store: JobStore, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old worker's ``<record>:uploads`` set (kept for 14 days) and ``<record>:lease:<step>``
    string must not be read as job records: one WRONGTYPE would end every sweep."""
    store.open(job("old"), {"export": {}, "job_id": "old"})
    r.sadd("contact_exports:job:old:uploads", "u1")
    r.set("contact_exports:job:old:lease:download", "holder")
    store.save_result("done", {"rows": 1}, seal={"key": "k.csv"})
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    assert [record["job_id"] for record in store.stale(older_than=60)] == ["old"]
    assert store.owed_seals(older_than=60) == [("done", {"key": "k.csv"})]
