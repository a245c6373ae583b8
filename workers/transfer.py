"""Copying a byte stream into a sink while measuring it: size, sha256, CSV rows and header.

Measuring on the way means the figures describe exactly the bytes that were stored, with no
second read of a file that may be gigabytes long.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from workers.csvstats import CsvStats


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class TransferSummary:
    size: int
    sha256: str
    rows: int
    columns: list[str]


def copy_measured(
    chunks: Iterable[bytes],
    sink: Sink,
    *,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 16 * 1024 * 1024,
) -> TransferSummary:
    digest = hashlib.sha256()
    stats = CsvStats()
    size = 0
    next_report = progress_every
    for chunk in chunks:
        digest.update(chunk)
        stats.feed(chunk)
        sink.write(chunk)
        size += len(chunk)
        if on_progress is not None and size >= next_report:
            on_progress(size)
            next_report = size + progress_every
    return TransferSummary(size, digest.hexdigest(), stats.rows, stats.columns)
