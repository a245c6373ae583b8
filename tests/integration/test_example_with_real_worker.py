"""``examples/enqueue_export.py`` run as an application would run it, against a real worker:
real Redis, rclone S3 and the sandbox; its environment has only the broker's URL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET
from tests.integration.helpers import RESULT_TIMEOUT, assert_stored_once, run_as_app

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "enqueue_export.py"


def run_example(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Run from outside the project, so nothing of it can be imported by accident.
    return run_as_app(
        [sys.executable, str(EXAMPLE), *args, "--timeout", str(RESULT_TIMEOUT)], redis_url, cwd="/"
    )


def test_the_example_prints_progress_then_the_result(
    worker: WorkerProcess, redis_url: str, sandbox: SandboxProcess, s3: Any
) -> None:
    job = f"example-{uuid.uuid4().hex[:8]}"
    done = run_example(
        redis_url,
        "--status",
        "active",
        "--field",
        "email_address",
        "--job-id",
        job,
        "--key",
        f"example/{job}.csv",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["job_id"], summary["bucket"]) == (job, BUCKET)
    assert summary["columns"] == ["Email address - other"]
    assert_stored_once(s3, sandbox, summary)
    lines = done.stderr.splitlines()
    assert lines[0] == f"enqueued job {job}"
    assert any(line.startswith("polling: ") and "% done" in line for line in lines)


def test_the_example_exits_1_with_the_workers_error(worker: WorkerProcess, redis_url: str) -> None:
    done = run_example(redis_url, "--account", "nobody-here")
    assert done.returncode == 1, done.stderr
    assert "export failed: InvalidExportRequest" in done.stderr
    assert done.stdout == ""
