"""Method (e): the export run by a real celery worker, as another application would run it.

The worker has one slot, so its single pool child does the download; that child's RSS is sampled
before the task (idle) and while it runs (peak). The time is taken from when the sandbox logged
the results GET to when the task's result arrived: the download and upload, without the create
and poll steps before them. The worker's own log lines give the stream (the GET to the completed
upload) and the seal, which its own task runs after the result (``tasks.sealing``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import redis
from celery import Celery

from bench.corpus import TOKEN, CsvFile
from bench.sampling import RssSampler
from devstack.s3server import RcloneS3
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess

#: A Redis database of its own, so a benchmark never meets the tests' keys (db 14).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
#: Longest a single export may take before the benchmark gives up.
RESULT_TIMEOUT = 900.0
#: Samples of the idle child's RSS before each export; the largest is taken.
IDLE_SAMPLES = 5


class WorkerBench:
    def __init__(self, s3: RcloneS3, sandbox: SandboxProcess, bucket: str) -> None:
        self.sandbox = sandbox
        self.bucket = bucket
        self._log_dir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
        env = {
            **s3.env(),
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_RESULT_BACKEND": REDIS_URL,
            "CC_API_BASE_URL": sandbox.api_base,
            "CC_ACCESS_TOKEN": TOKEN,
            "S3_BUCKET": bucket,
            "POLL_INITIAL_SECONDS": "0.2",
            "POLL_MAX_SECONDS": "0.5",
        }
        self.worker = WorkerProcess(env, self._log_dir / "worker.log", name="bench")
        self.client = Celery(broker=REDIS_URL, backend=REDIS_URL)
        self.client.conf.update(
            task_serializer="json", accept_content=["json"], result_accept_content=["json"]
        )

    def __enter__(self) -> WorkerBench:
        redis.Redis.from_url(REDIS_URL).flushdb()
        self.worker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.worker.stop()
        self.client.close()

    def pool_child(self) -> psutil.Process:
        assert self.worker.process is not None
        children = psutil.Process(self.worker.process.pid).children()
        if len(children) != 1:
            raise RuntimeError(f"expected one pool child, found {len(children)}")
        return children[0]

    def export(self, file: CsvFile, key: str) -> dict[str, Any]:
        child = self.pool_child()
        sampler = RssSampler(child.pid)
        idle = 0
        for _ in range(IDLE_SAMPLES):
            idle = max(idle, sampler.sample())
            time.sleep(0.02)
        sampler.peak = idle
        sampler.start()
        job_id = f"bench-{uuid.uuid4().hex[:12]}"
        result = self.client.send_task(
            "contact_exports.export",
            kwargs={
                "export": {},
                "job_id": job_id,
                "destination": {"bucket": self.bucket, "key": key},
            },
            queue="contact_exports",
        )
        try:
            summary = result.get(timeout=RESULT_TIMEOUT, interval=0.01)
        finally:
            ended = time.time()
            sampler.stop()
        started = self._download_started(summary["activity_id"])
        return {
            "seconds": ended - started,
            "peak_rss": sampler.peak,
            "idle_rss": idle,
            "rss_growth": sampler.peak - idle,
            "sha256": summary["sha256"],
            "rows": summary["rows"],
            **self._stream_figures(job_id),
        }

    def _stream_figures(self, job_id: str) -> dict[str, float]:
        """stream_seconds from the worker's "streamed" line for this job, and seal_seconds from
        its "sealed" line: the seal task runs after the result, so it is waited for here (the
        object is checked and deleted next)."""
        figures: dict[str, float] = {}
        deadline = time.monotonic() + RESULT_TIMEOUT
        while len(figures) < 2 and time.monotonic() < deadline:
            for line in (self._log_dir / "worker.log").read_text().splitlines():
                for opening, name in (("streamed", "stream_seconds"), ("sealed", "seal_seconds")):
                    if f"job {job_id}: {opening}" in line:
                        figures[name] = json.loads(line)[name]
            time.sleep(0.05)
        if len(figures) < 2:
            raise RuntimeError(f"the worker logged no stream or seal figures for job {job_id}")
        return figures

    def _download_started(self, activity_id: str) -> float:
        gets = self.sandbox.requests(endpoint="get_results", activity_id=activity_id)
        if not gets:
            raise RuntimeError(f"the sandbox logged no results GET for activity {activity_id}")
        return min(datetime.fromisoformat(entry["ts"]).timestamp() for entry in gets)
