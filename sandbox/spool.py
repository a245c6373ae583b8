"""Rendered CSV files on disk, rendered once per distinct export and reused.

A file is keyed by a hash of everything that changes its bytes (seed, contact
count, normalized request, format options, generator version).  It is written
under a temporary name and renamed when complete, with a small JSON sidecar
holding its sha256/size/rows, so a kept spool directory lets later runs serve
gigabyte exports without re-rendering, and a crash never leaves a truncated
file that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from sandbox.contacts import ContactUniverse
from sandbox.csvfile import CsvFormat, ExportFileInfo, RenderCancelledError, render_csv
from sandbox.exportspec import ExportSpec
from sandbox.selection import candidates

RENDER_FORMAT_VERSION = 1
"""Bump whenever the generator or CSV layout changes, so stale spool files are not reused."""

WRITE_BUFFER_BYTES = 4 << 20
"""Large buffered writes keep rendering CPU-bound rather than syscall-bound."""

SHUTDOWN_JOIN_SECONDS = 5.0
"""How long stopping waits for a render thread to notice cancellation."""


class RenderState(StrEnum):
    RENDERING = "rendering"
    DONE = "done"
    FAILED = "failed"


class RenderJob:
    """Progress and outcome of rendering one spool file, shared by every activity using it."""

    def __init__(self, key: str, csv_path: Path, candidates: int) -> None:
        self.key = key
        self.csv_path = csv_path
        self.candidates = candidates
        self.state = RenderState.RENDERING
        self.examined = 0
        self.rows = 0
        self.info: ExportFileInfo | None = None
        self.error: str | None = None
        self.finished_at: float | None = None
        self.done = threading.Event()

    def report(self, examined: int, rows: int) -> None:
        self.examined = examined
        self.rows = rows

    def finish(self, info: ExportFileInfo, at: float) -> None:
        self.info = info
        self.rows = info.rows
        self.examined = self.candidates
        self.finished_at = at
        self.state = RenderState.DONE
        self.done.set()

    def fail(self, error: str, at: float) -> None:
        self.error = error
        self.finished_at = at
        self.state = RenderState.FAILED
        self.done.set()

    def fraction(self) -> float:
        """Share of the work done, which caps the activity's percent_done."""
        if self.state is not RenderState.RENDERING:
            return 1.0
        return self.examined / self.candidates if self.candidates else 0.0


def spool_key(universe: ContactUniverse, spec: ExportSpec, fmt: CsvFormat) -> str:
    material = {
        "version": RENDER_FORMAT_VERSION,
        "seed": universe.seed,
        "contacts": universe.size,
        "request": spec.normalized(),
        "bom": fmt.bom,
        "crlf": fmt.crlf,
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


class Spool:
    """Owns the spool directory and the background render threads."""

    def __init__(
        self,
        directory: Path,
        universe: ContactUniverse,
        fmt: CsvFormat,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.universe = universe
        self.fmt = fmt
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, RenderJob] = {}
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        directory.mkdir(parents=True, exist_ok=True)

    def job_for(self, spec: ExportSpec) -> RenderJob:
        """The job producing ``spec``'s file: cached, in flight, or newly started."""
        key = spool_key(self.universe, spec, self.fmt)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.state is not RenderState.FAILED:
                return job
            csv_path = self.directory / f"{key}.csv"
            job = RenderJob(key, csv_path, len(candidates(self.universe, spec)))
            self._jobs[key] = job
            cached = self._load_cached(csv_path)
            if cached is not None:
                job.finish(cached, self._clock())
                return job
            thread = threading.Thread(
                target=self._render, args=(job, spec), name=f"render-{key[:8]}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
            return job

    def close(self) -> None:
        """Cancel renders in flight so a stopping sandbox leaves no temporary files."""
        self._closing.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(SHUTDOWN_JOIN_SECONDS)

    @staticmethod
    def _info_path(csv_path: Path) -> Path:
        return csv_path.with_suffix(".json")

    def _load_cached(self, csv_path: Path) -> ExportFileInfo | None:
        try:
            info = ExportFileInfo.from_json(json.loads(self._info_path(csv_path).read_text()))
            size = csv_path.stat().st_size
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return info if size == info.bytes else None

    def _render(self, job: RenderJob, spec: ExportSpec) -> None:
        suffix = f".tmp-{uuid.uuid4().hex}"
        tmp_csv = job.csv_path.with_name(job.csv_path.name + suffix)
        info_path = self._info_path(job.csv_path)
        tmp_info = info_path.with_name(info_path.name + suffix)
        try:
            with tmp_csv.open("wb", buffering=WRITE_BUFFER_BYTES) as out:
                info = render_csv(
                    self.universe,
                    spec,
                    self.fmt,
                    out,
                    on_progress=job.report,
                    cancelled=self._closing.is_set,
                )
            tmp_info.write_text(json.dumps(info.to_json()))
            os.replace(tmp_csv, job.csv_path)
            os.replace(tmp_info, info_path)
        except RenderCancelledError:
            job.fail("The sandbox stopped before the export was rendered", self._clock())
        except Exception as exc:  # any bug must fail the activity, not hang it forever
            job.fail(f"Rendering the export failed: {exc}", self._clock())
        else:
            job.finish(info, self._clock())
        finally:
            tmp_csv.unlink(missing_ok=True)
            tmp_info.unlink(missing_ok=True)
