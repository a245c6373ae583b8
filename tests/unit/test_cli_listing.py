"""``contact-exports jobs``: recent jobs from their records in Redis, filtered by state, account
and age, newest first, as a table or JSON."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import redis
from typer.testing import CliRunner

from contact_exports_cli.exceptions import InvalidUsageError
from contact_exports_cli.jobs import since_time
from contact_exports_cli.main import app as cli
from contact_exports_client.ledger import record_submission
from tests.unit.factories import a_job
from workers.state.jobs import JobState, JobStore

NOW = 1_796_400_000.0


def test_since_takes_a_duration_or_a_time() -> None:
    assert since_time("30m", NOW) == NOW - 1800
    assert since_time("2h", NOW) == NOW - 7200
    assert since_time("7d", NOW) == NOW - 7 * 86400
    assert (
        since_time("2026-12-04T09:00:00Z", NOW) == datetime(2026, 12, 4, 9, tzinfo=UTC).timestamp()
    )
    assert since_time("2026-12-04T09:00:00", NOW) == since_time("2026-12-04T09:00:00Z", NOW)
    with pytest.raises(InvalidUsageError, match="give a duration"):
        since_time("yesterday", NOW)


@pytest.fixture
def jobs(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    """Four jobs: acme's completed (2 h ago), acme's polling and default's failed (1 h ago),
    and one only queued by a caller (now)."""
    store = JobStore(r)
    clock = [time.time() - 7200]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    store.open(a_job("acme-old", account="acme", key="c/acme-old.csv"), {"account": "acme"})
    store.save_result("acme-old", {"rows": 42})
    clock[0] += 3600
    store.open(a_job("acme-now", account="acme", key="c/acme-now.csv"), {"account": "acme"})
    store.set_state("acme-now", JobState.POLLING)
    store.open(a_job("broken"), {"export": {}})
    store.fail("broken", "download", RuntimeError("x"))
    clock[0] += 3600
    record_submission(r, "queued-1", "queued-1", {"export": {}})
    monkeypatch.undo()
    return store


def listed(redis_url: str, *args: str) -> list[dict[str, object]]:
    env = {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url}
    said = CliRunner().invoke(cli, ["jobs", "--json", *args], env=env)
    assert said.exit_code == 0, said.output
    rows: list[dict[str, object]] = json.loads(said.stdout)
    return rows


def test_jobs_are_listed_newest_first_with_what_their_records_say(
    jobs: JobStore, redis_url: str
) -> None:
    rows = listed(redis_url)
    assert [row["job_id"] for row in rows][:1] == ["queued-1"]
    by_id = {row["job_id"]: row for row in rows}
    assert by_id["acme-old"] | {"created_at": 0, "updated_at": 0} == {
        "job_id": "acme-old",
        "state": "completed",
        "account": "acme",
        "format": "csv",  # none asked: the default
        "bucket": "b",
        "key": "c/acme-old.csv",
        "rows": 42,
        "created_at": 0,
        "updated_at": 0,
    }
    assert by_id["queued-1"]["state"] == "queued"


def test_jobs_are_filtered_by_state_account_and_age(jobs: JobStore, redis_url: str) -> None:
    assert [r["job_id"] for r in listed(redis_url, "--account", "acme")] == [
        "acme-now",
        "acme-old",
    ]
    states = listed(redis_url, "--state", "failed", "--state", "completed")
    assert sorted(r["job_id"] for r in states) == ["acme-old", "broken"]
    recent = listed(redis_url, "--since", "90m")
    assert "acme-old" not in {r["job_id"] for r in recent}
    assert {"acme-now", "broken", "queued-1"} <= {r["job_id"] for r in recent}


def test_the_table_shows_each_job_on_one_line(jobs: JobStore, redis_url: str) -> None:
    env = {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url, "COLUMNS": "160"}
    said = CliRunner().invoke(cli, ["jobs", "--account", "acme"], env=env)
    assert said.exit_code == 0, said.output
    line = next(line for line in said.stdout.splitlines() if "acme-old" in line)
    assert "completed" in line and "c/acme-old.csv" in line and "42" in line
