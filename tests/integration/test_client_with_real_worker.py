"""``contact_exports_client`` against a real worker: real Redis, rclone S3, the sandbox.

One export runs in a subprocess whose environment holds nothing but the broker's URL, which
shows an application can use the helper without the worker's settings or code.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from celery import Celery
from typer.testing import CliRunner

from contact_exports_cli.connections import close_app
from contact_exports_cli.main import app as cli_app
from contact_exports_client import Progress, make_app, submit_export, wait
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET
from tests.integration.helpers import RESULT_TIMEOUT, assert_stored_once, run_as_app

pytestmark = pytest.mark.integration

RESULT_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "schemas" / "export-result.schema.json").read_text()
)

#: What the application in the subprocess runs: the helper, and a report of what it loaded.
APPLICATION = """
import json, sys
from contact_exports_client import submit_export, wait

stages = []
result = submit_export({"status": "active"}, job_id=sys.argv[1], destination={"key": sys.argv[2]})
summary = wait(result, timeout=float(sys.argv[3]), on_progress=lambda p: stages.append(p["stage"]))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"workers", "tasks", "celeryconfig"})
print(json.dumps({"summary": summary, "stages": stages, "loaded": loaded}))
"""


@pytest.fixture(scope="module")
def celery(redis_url: str) -> Iterator[Celery]:
    app = make_app(redis_url, redis_url)
    yield app
    close_app(app)  # the helper keeps its app for the process; the test suite does not


def test_submit_and_wait_report_progress_and_return_the_contract_result(
    worker: WorkerProcess, celery: Celery, redis_url: str, sandbox: SandboxProcess, s3: Any
) -> None:
    job = f"client-{uuid.uuid4().hex[:8]}"
    seen: list[Progress] = []
    result = submit_export(
        {"status": "active", "fields": ["email_address", "first_name"]},
        job_id=job,
        destination={"bucket": BUCKET, "key": f"client/{job}.csv"},
        app=celery,
    )
    summary = wait(result, timeout=RESULT_TIMEOUT, on_progress=seen.append)
    jsonschema.Draft202012Validator(RESULT_SCHEMA).validate(summary)
    assert (summary["job_id"], summary["key"]) == (job, f"client/{job}.csv")
    assert_stored_once(s3, sandbox, dict(summary))
    assert "polling" in [p["stage"] for p in seen]
    assert all(p["job_id"] == job and 0 <= p["percent_done"] <= 100 for p in seen)

    # Sent under its job id, the job can be followed by that id alone.
    status = CliRunner().invoke(
        cli_app,
        ["status", job, "--json"],
        env={"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url},
    )
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["celery"]["state"] == "SUCCESS"


def test_wait_raises_the_workers_error_by_its_contract_name(
    worker: WorkerProcess, celery: Celery
) -> None:
    result = submit_export({}, account="no-such-account", app=celery)
    with pytest.raises(Exception) as caught:
        wait(result, timeout=RESULT_TIMEOUT)
    assert type(caught.value).__name__ == "InvalidExportRequest"
    assert "no-such-account" in str(caught.value)


def test_an_application_without_worker_settings_exports_with_the_helper(
    worker: WorkerProcess, redis_url: str, sandbox: SandboxProcess, s3: Any
) -> None:
    job = f"client-app-{uuid.uuid4().hex[:8]}"
    done = run_as_app(
        [sys.executable, "-c", APPLICATION, job, f"client/{job}.csv", str(RESULT_TIMEOUT)],
        redis_url,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["loaded"] == []
    assert report["summary"]["job_id"] == job
    assert "polling" in report["stages"]
    assert_stored_once(s3, sandbox, report["summary"])
