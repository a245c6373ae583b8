"""A Node.js application drives a real worker by task name: ``examples/node/enqueue_export.js``
with npm's ``celery-node``, against real Redis, rclone S3 and the sandbox. Its environment has
only PATH and the broker's URL, so nothing of the worker can help it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET
from tests.integration.helpers import RESULT_TIMEOUT, assert_stored_once, run_as_app

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "node"


@pytest.fixture(scope="module")
def node() -> str:
    """The machine's node, with the example's locked dependencies installed (``npm ci``)."""
    found, npm = shutil.which("node"), shutil.which("npm")
    assert found and npm, "node and npm are needed: the Node.js caller is part of the suite"
    if not (EXAMPLE / "node_modules" / "celery-node").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(EXAMPLE)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return found


def run_example(node: str, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [node, str(EXAMPLE / "enqueue_export.js"), *args, "--timeout", str(RESULT_TIMEOUT)]
    return run_as_app(command, redis_url, cwd="/")


def test_a_node_caller_sees_progress_then_the_result(
    node: str, worker: WorkerProcess, redis_url: str, sandbox: SandboxProcess, s3: Any
) -> None:
    job = f"node-{uuid.uuid4().hex[:8]}"
    done = run_example(
        node, redis_url, "--status", "active", "--field", "email_address", "--job-id", job
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["job_id"], summary["bucket"]) == (job, BUCKET)
    assert summary["columns"] == ["Email address - other"]
    assert_stored_once(s3, sandbox, summary)
    lines = done.stderr.splitlines()
    assert lines[0] == f"enqueued job {job}"
    assert any(line.startswith(("polling: ", "downloading: ")) for line in lines), lines


def test_a_node_caller_reads_the_failure_type(
    node: str, worker: WorkerProcess, redis_url: str
) -> None:
    done = run_example(node, redis_url, "--account", "nobody-here")
    assert done.returncode == 1, done.stderr
    assert "export failed: InvalidExportRequest: account: unknown account" in done.stderr
    assert done.stdout == ""
