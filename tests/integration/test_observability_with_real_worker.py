"""What operators see of a real worker: JSON log lines with job context, Prometheus counters.

The shared worker serves its metrics endpoint (conftest ``metrics_port``); its counters are
read before and after each export, so what other tests did before does not matter.
"""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from celery import Celery

from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import TOKEN
from tests.integration.helpers import RESULT_TIMEOUT, enqueue, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def observed(worker: WorkerProcess) -> WorkerProcess:
    return worker


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_counters_move_after_an_export(
    observed: WorkerProcess, client: Celery, sandbox: SandboxProcess, metrics_port: int
) -> None:
    before = scrape(metrics_port)
    summary = enqueue(client, export={"fields": ["email_address"]}).get(timeout=RESULT_TIMEOUT)
    after = scrape(metrics_port)

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved("contact_exports_exports_started_total") == 1
    assert moved("contact_exports_exports_completed_total") == 1
    assert moved("contact_exports_bytes_streamed_total") == summary["bytes"]
    assert moved('contact_exports_stage_seconds_count{stage="downloading"}') == 1
    assert moved('contact_exports_stage_seconds_count{stage="polling"}') >= 1
    assert moved('contact_exports_api_calls_total{endpoint="create_export",status="201"}') == 1
    assert moved('contact_exports_api_calls_total{endpoint="get_results",status="200"}') == 1
    assert moved('contact_exports_api_calls_total{endpoint="get_activity",status="200"}') >= 1


def test_failures_are_counted_by_reason(
    observed: WorkerProcess, client: Celery, sandbox: SandboxProcess, metrics_port: int
) -> None:
    name = 'contact_exports_exports_failed_total{reason="InvalidExportRequest"}'
    before = scrape(metrics_port).get(name, 0.0)
    with pytest.raises(Exception, match="status"):
        enqueue(client, export={"status": "bounced"}).get(timeout=RESULT_TIMEOUT)
    # Celery stores the failure before it calls the failure handler that counts it.
    wait_until(lambda: scrape(metrics_port).get(name, 0.0) == before + 1, what="the count")


def test_log_lines_are_json_with_job_context_and_no_token(
    observed: WorkerProcess, client: Celery, sandbox: SandboxProcess
) -> None:
    job_id = f"logs-{uuid.uuid4().hex[:8]}"
    summary = enqueue(client, export={}, job_id=job_id).get(timeout=RESULT_TIMEOUT)
    lines = [line for line in observed.log().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    mine = [r for r in records if r.get("job_id") == job_id]
    stages = {r["stage"] for r in mine}
    assert {"creating", "polling", "downloading"} <= stages
    polling = [r for r in mine if r["stage"] == "polling"]
    assert all(r["account"] == "default" for r in mine)
    assert all(r["activity_id"] == summary["activity_id"] for r in polling)
    assert TOKEN not in observed.log()
