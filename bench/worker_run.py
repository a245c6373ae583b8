"""The export run by a real celery worker, as another application would run it.

The worker runs with ``-c N`` pool processes (``concurrency``). With one, its single pool child
does the download; that child's RSS is sampled before the task (idle) and while it runs (peak),
and its CPU times (user + sys, every thread) every few ms from the send to the result, so the
download task's share is read from the moment it logged its start. The time is taken from when
the sandbox logged the results GET to when the task's result arrived: the download and upload,
without the create and poll steps before them. The worker's own log lines give the stream (the
GET to the completed upload), the seal, which its own task runs after the result
(``tasks.sealing``), and how the object was stored (one PUT or parts).

A pool process learns on its first export whether the store keeps ``aws-chunked`` on a streamed
PUT (``workers.s3.objectmeta.EncodingCheck``): that export is stored in one PUT, HEADed and sealed
before its result, and later ones are not; it also pays the task's first imports. ``warm_up``
runs exports until every pool process has downloaded one, before any is timed, so the trials
measure a worker in its steady state (the warm-up's figures are kept apart).

The worker's Constant Contact rate limit is raised to BENCH_RATE_LIMIT (the sandbox has none):
at the default 4 requests/s the create, poll and results requests of N exports sent at once
(about four each) would spread their results GETs over N seconds, and goal 4 would time the
limiter, not N downloads at once. No timed window of goal 1 includes the limiter's waits.

For the same reason exports sent at once go to ``accounts`` accounts in turn (``bench-0``, ...,
all with the sandbox's token, stored encrypted as an operator would store them): the worker
POSTs one account's exports one at a time (its posting lease), the next ~1 s (BUSY_COUNTDOWN)
after the one before, so N exports of one account reach their results GETs about a second apart.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import redis
from celery import Celery
from celery.result import AsyncResult
from cryptography.fernet import Fernet

from bench.corpus import TOKEN, CsvFile
from bench.sampling import RssSampler, TimedSamples
from devstack.s3server import S3Server
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from workers.constant_contact.tokens import AccountStore, Credentials, make_cipher

#: A Redis database of its own, so a benchmark never meets the tests' keys (db 14).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
#: Longest a single export may take before the benchmark gives up.
RESULT_TIMEOUT = 900.0
#: Samples of the idle child's RSS before each export; the largest is taken.
IDLE_SAMPLES = 5
#: The worker's log line that says how the job's object is stored.
STORED_AS = {"storing them in one PUT": "one PUT", "storing them in parts": "parts"}
#: What ``_log_figures`` reads from the worker's log for each export.
LOG_FIGURES = frozenset({"stream_seconds", "seal_seconds", "stored_as", "download_logged_at"})
#: Requests/s the benchmark's worker may send the sandbox (CC_RATE_LIMIT_PER_SECOND).
BENCH_RATE_LIMIT = "100"
#: Most rounds of warm-up exports before the benchmark gives up waiting for an idle pool process
#: to take one (a process that downloaded spends far more CPU than one that did not).
WARM_UP_ROUNDS = 5
#: A pool process counts as warm once its CPU since the warm-up began is this share of the
#: busiest one's: a download costs hundreds of ms, a create or poll task a few.
WARM_CPU_SHARE = 0.25
#: Seconds between samples of the pool process's CPU times: the download task's start is known
#: only afterwards (its log line), and is placed this close.
CPU_SAMPLE_SECONDS = 0.005


def results_get_started(
    sandbox: SandboxProcess, activity_id: str, after: float | None = None
) -> float:
    """When the sandbox began answering the results GET of ``activity_id`` (epoch seconds): the
    first one, or the first at or after ``after`` (the log's stamps have millisecond steps)."""
    gets = sandbox.requests(endpoint="get_results", activity_id=activity_id)
    stamps = [datetime.fromisoformat(entry["ts"]).timestamp() for entry in gets]
    if after is not None:
        stamps = [stamp for stamp in stamps if stamp >= after - 0.001]
    if not stamps:
        raise RuntimeError(f"the sandbox logged no results GET for activity {activity_id}")
    return min(stamps)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def cpu_sampler(process: psutil.Process) -> TimedSamples:
    """One process's CPU times (user, sys: all its threads), sampled with the wall clock, so
    the CPU spent since a moment learnt only later can be read back (``change_since``)."""

    def read() -> tuple[float, float]:
        times = process.cpu_times()
        return times.user, times.system

    return TimedSamples(read, every=CPU_SAMPLE_SECONDS, name="cpu-sampler")


@dataclass
class Sent:
    """One export sent to the worker: its job, key and pending result."""

    job_id: str
    key: str
    result: AsyncResult[Any]


class WorkerBench:
    def __init__(
        self,
        s3: S3Server,
        sandbox: SandboxProcess,
        bucket: str,
        concurrency: int = 1,
        accounts: int = 1,
    ) -> None:
        self.sandbox = sandbox
        self.bucket = bucket
        self.concurrency = concurrency
        #: The accounts exports go to in turn: ``default`` alone, or bench-0, bench-1, ...
        self.accounts = ["default"] if accounts == 1 else [f"bench-{i}" for i in range(accounts)]
        self._key = Fernet.generate_key().decode()
        self._sent = 0
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
            "CC_RATE_LIMIT_PER_SECOND": BENCH_RATE_LIMIT,
        }
        if accounts > 1:
            env["CC_TOKEN_ENCRYPTION_KEY"] = self._key
        self.worker = WorkerProcess(
            env, self._log_dir / "worker.log", name="bench", concurrency=concurrency
        )
        self.client = Celery(broker=REDIS_URL, backend=REDIS_URL)
        self.client.conf.update(
            task_serializer="json", accept_content=["json"], result_accept_content=["json"]
        )

    def __enter__(self) -> WorkerBench:
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
        if self.accounts != ["default"]:
            store = AccountStore(client, make_cipher(self._key))
            for account in self.accounts:
                store.put(account, Credentials(access_token=TOKEN, refresh_token=None))
        client.close()
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

    def pool_children(self) -> list[psutil.Process]:
        assert self.worker.process is not None
        children: list[psutil.Process] = psutil.Process(self.worker.process.pid).children()
        if len(children) != self.concurrency:
            raise RuntimeError(f"expected {self.concurrency} pool children, found {children}")
        return children

    def warm_up(self, key: str) -> list[dict[str, Any]]:
        """Rounds of one export per pool process at once until every pool process has run a
        download (see the module's doc); the exports, untimed by the trials, are returned."""
        children = self.pool_children()
        before = {child.pid: cpu_seconds(child) for child in children}
        exports: list[dict[str, Any]] = []
        for round_ in range(WARM_UP_ROUNDS):
            sent = [self._send(f"{key}-{round_}-{i}") for i in range(self.concurrency)]
            summaries = [self._wait(s) for s in sent]
            ended = time.time()
            exports += [
                {
                    "key": s.key,
                    "warm_up_round": round_,
                    "seconds": ended - results_get_started(self.sandbox, summary["activity_id"]),
                    **self._log_figures(s),
                }
                for s, summary in zip(sent, summaries, strict=True)
            ]
            spent = [cpu_seconds(child) - before[child.pid] for child in children]
            if min(spent) >= WARM_CPU_SHARE * max(spent):
                return exports
        raise RuntimeError(f"not every pool process took a warm-up download: CPU {spent}")

    def export(self, file: CsvFile, key: str) -> dict[str, Any]:
        """One export on a one-process worker: seconds, RSS and the pool process's CPU."""
        (child,) = self.pool_children()
        sampler = RssSampler(child.pid)
        idle = 0
        for _ in range(IDLE_SAMPLES):
            idle = max(idle, sampler.sample())
            time.sleep(0.02)
        sampler.peak = idle
        sampler.start()
        cpu = cpu_sampler(child).start()
        try:
            summary = self._wait(sent := self._send(key))
        finally:
            ended = time.time()
            cpu.stop()
            sampler.stop()
        started = results_get_started(self.sandbox, summary["activity_id"])
        figures = self._log_figures(sent)
        _, (user, system) = cpu.change_since(figures["download_logged_at"])
        _, (whole_user, whole_system) = cpu.change_since(None)
        return {
            "seconds": ended - started,
            "peak_rss": sampler.peak,
            "idle_rss": idle,
            "rss_growth": sampler.peak - idle,
            # The download task, from its "downloading" line to the result; and the whole
            # export (its export, create and poll tasks too).
            "cpu_seconds": user + system,
            "cpu_user_seconds": user,
            "cpu_sys_seconds": system,
            "cpu_export_seconds": whole_user + whole_system,
            "sha256": summary["sha256"],
            "rows": summary["rows"],
            **figures,
        }

    def export_many(self, keys: list[str]) -> dict[str, Any]:
        """len(keys) exports sent at once: wall seconds from the first results GET to the last
        result, and each export's own figures (checked and deleted by the caller)."""
        sent = [self._send(key) for key in keys]
        summaries = [self._wait(s) for s in sent]  # in order: the loop ends with the last one
        ended = time.time()
        started = [results_get_started(self.sandbox, s["activity_id"]) for s in summaries]
        first = min(started)
        exports = [
            {"key": s.key, "sha256": summary["sha256"], "rows": summary["rows"]}
            | {"get_offset_seconds": get - first}
            | self._log_figures(s)
            for s, summary, get in zip(sent, summaries, started, strict=True)
        ]
        return {"seconds": ended - first, "exports": exports}

    def _send(self, key: str) -> Sent:
        job_id = f"bench-{uuid.uuid4().hex[:12]}"
        account = self.accounts[self._sent % len(self.accounts)]
        self._sent += 1
        result = self.client.send_task(
            "contact_exports.export",
            kwargs={
                "export": {},
                "account": account,
                "job_id": job_id,
                "destination": {"bucket": self.bucket, "key": key},
            },
            queue="contact_exports",
        )
        return Sent(job_id, key, result)

    def _wait(self, sent: Sent) -> dict[str, Any]:
        summary: dict[str, Any] = sent.result.get(timeout=RESULT_TIMEOUT, interval=0.01)
        return summary

    def _log_figures(self, sent: Sent) -> dict[str, Any]:
        """stream_seconds from the worker's "streamed" line for this job, seal_seconds from its
        "sealed" line, stored_as from its "results answered" line, and download_logged_at (epoch)
        from its "downloading" line. The seal task runs after the result, so it is waited for
        here (the object is checked and deleted next); an export sealed before its result (a pool
        process's first, see the module's doc) has no seal task, and its seal_seconds are 0: they
        are in its time to the result already."""
        figures: dict[str, Any] = {}
        deadline = time.monotonic() + RESULT_TIMEOUT
        while not figures.keys() >= LOG_FIGURES and time.monotonic() < deadline:
            for line in (self._log_dir / "worker.log").read_text().splitlines():
                figures |= self._figures_of(sent, line)
            time.sleep(0.05)
        if not figures.keys() >= LOG_FIGURES:
            raise RuntimeError(f"the worker logged no stream, seal or storage line for {sent}")
        return figures

    def _figures_of(self, sent: Sent, line: str) -> dict[str, Any]:
        """What one line of the worker's log says of ``sent`` (see ``_log_figures``)."""
        if f"s3://{self.bucket}/{sent.key}: sealed before the result" in line:
            return {"seal_seconds": 0.0, "sealed_before_result": True}
        job = f"job {sent.job_id}: "
        if job not in line:
            return {}
        try:
            record = json.loads(line)
        except ValueError:
            return {}  # not one of the worker's JSON lines (celery's banner, a traceback)
        event = str(record.get("event", ""))
        if event.startswith(f"{job}streamed"):
            return {"stream_seconds": record["stream_seconds"]}
        if event.startswith(f"{job}sealed"):
            return {"seal_seconds": record["seal_seconds"]}
        if event.startswith(f"{job}downloading"):
            stamp = datetime.fromisoformat(record["timestamp"])
            return {"download_logged_at": stamp.timestamp()}
        stored_as = [how for phrase, how in STORED_AS.items() if phrase in event]
        return {"stored_as": stored_as[0]} if stored_as else {}
