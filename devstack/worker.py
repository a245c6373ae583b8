"""Real ``celery worker`` processes, so tests can kill them like production kills them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.ports import POLL_INTERVAL
from devstack.process import Managed

READY_TIMEOUT = 60.0
#: Celery prints this once the worker consumes.
READY_MARK = b" ready."


class WorkerProcess(Managed):
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        name: str = "worker",
        concurrency: int = 1,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.name = name
        self.concurrency = concurrency
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self._leaving = False

    @property
    def hostname(self) -> str:
        return f"{self.name}@localhost"

    def start(self) -> WorkerProcess:
        """Start the worker and return once it consumes."""
        self.spawn()
        self.wait_ready()
        return self

    def spawn(self) -> WorkerProcess:
        """Start the worker process without waiting for it (``wait_ready`` does), so several
        can boot at once."""
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "-Q",
            "contact_exports",
            "--hostname",
            self.hostname,
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            *self.extra_args,
        ]
        self._leaving = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if READY_MARK in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early; log:\n{self.log()[-3000:]}")
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"worker not ready in {READY_TIMEOUT}s; log:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not finish in time."""
        stop_all([self], timeout)

    def leave(self) -> None:
        """Ask for a warm shutdown (SIGTERM, once) without waiting for it: the worker stops
        consuming at once and finishes what it holds, about 2 s, mostly its pool's."""
        if self.process is not None and self.process.poll() is None and not self._leaving:
            self.process.send_signal(signal.SIGTERM)
            self._leaving = True


def stop_all(workers: list[WorkerProcess], timeout: float = 30.0) -> None:
    """Warm shutdown of every worker at once, then SIGKILL for any that does not finish in
    time."""
    for worker in workers:
        worker.leave()
    deadline = time.monotonic() + timeout
    for worker in workers:
        if worker.process is None:
            continue
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
