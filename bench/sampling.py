"""Peak RSS of a process while it works, and the CPU a trial cost the store and the machine,
sampled from outside by psutil."""

from __future__ import annotations

import subprocess
import threading
import time
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


def busy_seconds() -> float:
    """The machine's busy CPU seconds so far, summed over its cores: not idle, not waiting for
    I/O, not stolen by the hypervisor (Linux counts guest time inside user time already)."""
    times = psutil.cpu_times()._asdict()
    neither = ("idle", "iowait", "steal", "guest", "guest_nice")
    return sum(value for name, value in times.items() if name not in neither)


class StoreLoad:
    """The S3 server's CPU and the machine's busy cores, sampled with the wall clock in a thread,
    so that what a span cost can be read back once its start is known (``since``).

    On two cores the store competes with the method it serves: a store that spends 20 CPU
    seconds a GiB (SeaweedFS here) leaves a method only what is left of the cores, so each
    figure is read beside the store's CPU per GiB and the machine's busy cores.
    """

    def __init__(self, store_pid: int | None) -> None:
        self._process = psutil.Process(store_pid) if store_pid is not None else None
        #: (epoch seconds, the store's CPU seconds, the machine's busy seconds), oldest first;
        #: a moment psutil could not read the store is not sampled.
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-load", daemon=True)

    def __enter__(self) -> StoreLoad:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        store = 0.0
        if self._process is not None:
            try:
                times = self._process.cpu_times()
            except psutil.Error:
                return
            store = times.user + times.system
        self.samples.append((time.time(), store, busy_seconds()))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def since(self, moment: float | None = None) -> tuple[float | None, float]:
        """The store's CPU seconds (None without a store process) and the machine's busy
        cores, from the last sample at or before ``moment`` (the first without one) to the end."""
        before = [s for s in self.samples if moment is not None and s[0] <= moment]
        started, store, busy = before[-1] if before else self.samples[0]
        ended, last_store, last_busy = self.samples[-1]
        if ended <= started:
            raise RuntimeError(f"no samples after {moment}: the span was not sampled")
        cores = (last_busy - busy) / (ended - started)
        return (None if self._process is None else last_store - store), cores
