"""The record a caller writes before sending an export: what the workers' job store expects."""

from __future__ import annotations

import json
import time

import redis

from contact_exports_client.ledger import RECORD_TTL_SECONDS, record_submission
from workers.state.jobs import JobState, JobStore


def test_a_submission_is_a_queued_record_the_janitor_can_send_again(r: redis.Redis) -> None:
    before = time.time()
    assert record_submission(r, "crm-1", "task-1", {"export": {"status": "active"}})
    record = JobStore(r).record("crm-1")
    assert record["state"] == JobState.QUEUED
    assert record["result_id"] == "task-1"
    assert json.loads(record["kwargs"]) == {"export": {"status": "active"}, "job_id": "crm-1"}
    assert before <= float(record["updated_at"]) <= time.time()
    assert 0 < r.ttl("contact_exports:job:crm-1") <= RECORD_TTL_SECONDS
    # Untouched for long enough, it is what the janitor sends again; until then it is left be.
    assert [s["job_id"] for s in JobStore(r).stale(0)] == ["crm-1"]
    assert JobStore(r).stale(3600) == []


def test_a_job_seen_before_keeps_its_record(r: redis.Redis) -> None:
    store = JobStore(r)
    store.save_result("crm-2", {"rows": 3})
    kept = store.record("crm-2")
    assert not record_submission(r, "crm-2", "task-2", {"export": {}})
    assert store.record("crm-2") == kept
