"""Peak RSS of a process while it works, and the CPU a trial cost the store and the machine,
sampled from outside by psutil."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
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


#: One reading of what a sampler watches (CPU seconds, say), as numbers that only rise.
Reading = tuple[float, ...]


class TimedSamples:
    """Readings of ``read`` with the wall clock, taken in a thread every ``every`` seconds from
    ``start`` to ``stop``, so that what a span cost can be read back once its start is known
    (``change_since``): a download's start, say, is learnt from its log line afterwards. A
    reading ``read`` cannot take (None) is left out."""

    def __init__(self, read: Callable[[], Reading | None], *, every: float, name: str) -> None:
        self._read = read
        self._every = every
        #: (epoch seconds, *reading), oldest first.
        self.samples: list[tuple[float, ...]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> TimedSamples:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        reading = self._read()
        if reading is not None:
            self.samples.append((time.time(), *reading))

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.sample()

    def change_since(self, moment: float | None) -> tuple[float, Reading]:
        """Seconds from the last sample at or before ``moment`` (the first, without one) to the
        last sample, and how much each reading rose over them."""
        before = [s for s in self.samples if moment is not None and s[0] <= moment]
        first = before[-1] if before else self.samples[0]
        last = self.samples[-1]
        return last[0] - first[0], tuple(b - a for a, b in zip(first[1:], last[1:], strict=True))


class StoreLoad:
    """The S3 server's CPU and the machine's busy cores over a trial (``since``).

    On two cores the store competes with the method it serves: a store that spends 20 CPU
    seconds a GiB (SeaweedFS here) leaves a method only what is left of the cores, so each
    figure is read beside the store's CPU per GiB and the machine's busy cores.
    """

    def __init__(self, store_pid: int | None) -> None:
        self._process = psutil.Process(store_pid) if store_pid is not None else None
        self._samples = TimedSamples(self._read, every=SAMPLE_SECONDS, name="store-load")

    def __enter__(self) -> StoreLoad:
        self._samples.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._samples.stop()

    def _read(self) -> Reading | None:
        """The store's CPU seconds and the machine's busy seconds; None when psutil could not
        read the store."""
        store = 0.0
        if self._process is not None:
            try:
                times = self._process.cpu_times()
            except psutil.Error:
                return None
            store = times.user + times.system
        return store, busy_seconds()

    def since(self, moment: float | None = None) -> tuple[float | None, float]:
        """The store's CPU seconds (None without a store process) and the machine's busy
        cores, from the last sample at or before ``moment`` (the first without one) to the end."""
        seconds, (store, busy) = self._samples.change_since(moment)
        if seconds <= 0:
            raise RuntimeError(f"no samples after {moment}: the span was not sampled")
        return (None if self._process is None else store), busy / seconds
