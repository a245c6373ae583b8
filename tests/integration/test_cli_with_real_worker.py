"""``contact-exports`` against a real worker: real Redis, rclone S3, the sandbox, a celery process.

Commands run in-process through typer's CliRunner, except one run of the installed console
script in a bare environment, which shows the command needs no worker credentials.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from contact_exports_cli.exitcodes import ExitCode
from contact_exports_cli.main import app
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    run_as_app,
    wait_until,
)
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

CONSOLE_SCRIPT = Path(sys.executable).parent / "contact-exports"
#: Variables the commands read; a test gives the ones it means and removes the rest.
CLEARED = ("JOBS_REDIS_URL", "CC_ACCESS_TOKEN", "CC_TOKEN_ENCRYPTION_KEY", "S3_BUCKET")


def cli(redis_url: str, *args: str) -> Any:
    env: dict[str, str | None] = {name: None for name in CLEARED}
    env |= {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url, "COLUMNS": "250"}
    return CliRunner().invoke(app, list(args), env=env)


def json_out(done: Any) -> Any:
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def new_job(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_submit_wait_from_a_bare_environment_then_status_and_result(
    worker: WorkerProcess, redis_url: str, sandbox: SandboxProcess, s3: Any
) -> None:
    job = new_job("cli")
    done = run_as_app(
        [
            str(CONSOLE_SCRIPT),
            "submit",
            "--wait",
            "--job-id",
            job,
            "--status",
            "active",
            "--field",
            "email_address,first_name",
            "--field",
            "last_name",
            "--key",
            f"cli/{job}.csv",
            "--timeout",
            str(RESULT_TIMEOUT),
        ],
        redis_url,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["job_id"] == job
    assert (summary["bucket"], summary["key"]) == (BUCKET, f"cli/{job}.csv")
    assert summary["columns"][:1] == ["Email address - other"]
    assert len(summary["columns"]) == 3
    assert_stored_once(s3, sandbox, summary)
    assert job in done.stderr and "stored" in done.stderr  # the progress bar's last state

    status = json_out(cli(redis_url, "status", job, "--json"))
    assert status["state"] == "completed"
    assert status["celery"] == {"state": "SUCCESS", "info": summary}
    assert status["record"]["kwargs"]["export"]["status"] == "active"
    assert status["record"]["result"] == summary

    assert json_out(cli(redis_url, "result", job)) == summary
    shown = cli(redis_url, "status", job)
    assert shown.exit_code == 0 and "completed" in shown.stdout and "SUCCESS" in shown.stdout


def test_a_failed_export_exits_1_is_listed_and_retried_to_completion(
    worker: WorkerProcess, redis_url: str, sandbox: SandboxProcess, s3: Any
) -> None:
    sandbox.add_faults({"endpoint": "create_export", "activity_outcome": "cancelled", "times": 1})
    job = new_job("cli-dead")
    failed = cli(redis_url, "submit", "--wait", "--job-id", job, "--all-active")
    assert failed.exit_code == ExitCode.EXPORT_FAILED, failed.output
    assert "ActivityFailed" in failed.stderr and "cancelled" in failed.stderr
    assert failed.stdout == ""

    again = cli(redis_url, "result", job)
    assert again.exit_code == ExitCode.EXPORT_FAILED and "ActivityFailed" in again.stderr
    letters = {row["job_id"]: row for row in json_out(cli(redis_url, "failed", "--json"))}
    assert letters[job]["error_type"] == "ActivityFailed"
    assert letters[job]["failed_step"] == "contact_exports.poll_activity"
    table = cli(redis_url, "failed")
    assert table.exit_code == 0 and "ActivityFailed" in table.stdout

    summary = json_out(cli(redis_url, "retry", job, "--wait"))
    assert summary["job_id"] == job
    assert_stored_once(s3, sandbox, summary)
    assert job not in {row["job_id"] for row in json_out(cli(redis_url, "failed", "--json"))}
    status = json_out(cli(redis_url, "status", job, "--json"))
    assert status["celery"]["state"] == "SUCCESS"
    assert (status["state"], status["record"]["reruns"]) == ("completed", "1")

    twice = cli(redis_url, "retry", job)
    assert twice.exit_code == ExitCode.NOT_FOUND
    assert "it is completed" in twice.stderr


def test_a_request_only_the_worker_can_refuse_exits_2(
    worker: WorkerProcess, redis_url: str
) -> None:
    done = cli(redis_url, "submit", "--wait", "--account", "nobody-has-this", "--all-active")
    assert done.exit_code == ExitCode.INVALID, done.output
    assert "InvalidExportRequest" in done.stderr and "nobody-has-this" in done.stderr


def test_watch_shows_a_job_in_flight_and_result_waits_for_it(
    worker: WorkerProcess, redis_url: str, sandbox: SandboxProcess
) -> None:
    sandbox.set_processing_seconds(2.5)  # the job stays in flight while the commands look
    job = new_job("cli-watch")
    submitted = cli(redis_url, "submit", "--job-id", job, "--status", "active")
    assert submitted.exit_code == 0, submitted.output
    assert submitted.stdout.strip() == job
    with redis.Redis.from_url(redis_url) as client:
        store = JobStore(client)
        wait_until(lambda: store.record(job).get("state") == "polling", what="the job polling")

    rows = {row["job_id"]: row for row in json_out(cli(redis_url, "watch", "--once", "--json"))}
    assert rows[job]["state"] == "polling"
    assert rows[job]["account"] == "default"
    table = cli(redis_url, "watch", "--once")
    assert table.exit_code == 0 and job in table.stdout

    early = cli(redis_url, "result", job)
    assert early.exit_code == ExitCode.NOT_FINISHED, early.output
    assert "has not finished" in early.stderr

    summary = json_out(cli(redis_url, "result", job, "--wait", "--timeout", str(RESULT_TIMEOUT)))
    assert summary["job_id"] == job
    after = json_out(cli(redis_url, "watch", "--once", "--json"))
    assert job not in {row["job_id"] for row in after}


def test_unknown_jobs_exit_4(redis_url: str) -> None:
    for args in (["status", "no-such-job"], ["result", "no-such-job"], ["retry", "no-such-job"]):
        done = cli(redis_url, *args)
        assert done.exit_code == ExitCode.NOT_FOUND, (args, done.output)
        assert "no-such-job" in done.stderr
