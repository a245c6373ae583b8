"""Peak RSS of a process while it works, sampled from outside by psutil."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

#: Seconds between RSS samples: short next to a part upload, cheap for the sampled process.
SAMPLE_SECONDS = 0.02


class RssSampler:
    """Samples one process's RSS in a thread until stopped; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self.stdout = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    def sample(self) -> int:
        try:
            rss = int(self._process.memory_info().rss)
        except psutil.Error:
            return self.peak
        self.peak = max(self.peak, rss)
        return rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_SECONDS)

    @classmethod
    @contextmanager
    def popen(
        cls, command: list[str], *, env: dict[str, str] | None = None, capture: bool = False
    ) -> Iterator[RssSampler]:
        """Run ``command`` to its end while sampling it; raise if it fails."""
        import os

        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = cls(process.pid).start()
        stdout, stderr = process.communicate()
        sampler.stop()
        sampler.stdout = stdout or ""
        if process.returncode != 0:
            raise RuntimeError(f"{command[:4]} exited {process.returncode}: {stderr[-2000:]}")
        yield sampler
