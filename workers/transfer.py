"""Copying a byte stream into a sink while measuring it: size, sha256, CSV rows and header.

Measuring on the way means the figures describe exactly the bytes that were stored, with no
second read of a file that may be gigabytes long.

Two ways through, chosen by what the source and sink can do:

- a source with ``readinto`` (``ResultsBody``, or the iterator its ``chunks`` returns) and a sink
  with ``free_space``/``commit`` (``MultipartWriter``): the socket fills the part buffer in place,
  a whole part per call, and the part is measured where it lies. No byte is copied in Python.
- any iterable of chunks into any ``write`` sink: each chunk is measured and written.

sha256 runs on whole parts, where hashlib releases the GIL, and so do most of the row count's
numpy passes (see ``workers.csvstats``). Each part is measured in the reading thread as it lies in
its buffer, just after it is committed, so it is measured while it uploads: measuring first held
back every upload, the first part's by 20-50 ms (a tenth of a 64 MiB export), since nothing else
is uploading then. Reading the buffer while the upload reads it is safe: it is reused only when the
reading thread asks for space again. Measuring on a thread of its own was tried: once the row
count was fast, it lost 7-11 % against this (bench/methods.py, four rounds side by side at
512 MiB on 2 cores), to one more thread contending for the GIL and cores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from workers.csvstats import Chunk, CsvStats

#: How often progress is reported, in bytes: often enough for a live bar, rare enough to be free.
PROGRESS_EVERY = 16 * 1024 * 1024


@runtime_checkable
class Sink(Protocol):
    def write(self, data: Chunk) -> None: ...


@runtime_checkable
class Readable(Protocol):
    """A byte source that fills a caller's buffer; 0 means the end."""

    def readinto(self, buffer: bytearray | memoryview) -> int: ...


@runtime_checkable
class PartSink(Protocol):
    """A sink that lends its own buffer to be filled in place (``MultipartWriter``)."""

    def free_space(self) -> memoryview: ...

    def commit(self, count: int) -> None: ...


@dataclass(frozen=True)
class TransferSummary:
    size: int
    sha256: str
    rows: int
    #: The stored object's column names.
    columns: list[str]
    #: For a converted format: Constant Contact's label and the type of each column.
    headers: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)


class Measurement:
    """sha256, size and CSV statistics of the bytes fed so far, in order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._stats = CsvStats()
        self.size = 0

    def feed(self, data: Chunk) -> None:
        self._digest.update(data)
        self._stats.feed(data)
        self.size += len(data) if not isinstance(data, memoryview) else data.nbytes

    def summary(self) -> TransferSummary:
        return TransferSummary(
            self.size, self._digest.hexdigest(), self._stats.rows, self._stats.columns
        )


class Progress:
    """Calls back with the bytes so far once every ``every`` bytes, not on every chunk: each
    call publishes task state to the result backend."""

    def __init__(self, callback: Callable[[int], None] | None, every: int) -> None:
        self._callback = callback
        self._every = every
        self._next = every

    def __call__(self, size: int) -> None:
        if self._callback is not None and size >= self._next:
            self._callback(size)
            self._next = size + self._every


def copy_measured(
    chunks: Iterable[Chunk] | Readable,
    sink: Sink | PartSink,
    *,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = PROGRESS_EVERY,
) -> TransferSummary:
    """Copy everything from ``chunks`` into ``sink``; return what was copied, measured."""
    progress = Progress(on_progress, progress_every)
    source = chunks if isinstance(chunks, Readable) else getattr(chunks, "source", None)
    if isinstance(source, Readable) and isinstance(sink, PartSink):
        return _fill_in_place(source, sink, progress)
    if isinstance(chunks, Readable) or not isinstance(sink, Sink):
        raise TypeError("a reader needs a sink with free_space/commit; chunks need write()")
    measurement = Measurement()
    for chunk in chunks:
        measurement.feed(chunk)
        sink.write(chunk)
        progress(measurement.size)
    return measurement.summary()


def _fill_in_place(source: Readable, sink: PartSink, progress: Progress) -> TransferSummary:
    measurement = Measurement()
    while True:
        with sink.free_space() as space:
            count = source.readinto(space)
            if count == 0:
                break
            with space[:count] as filled:
                sink.commit(count)  # a full part starts uploading now...
                measurement.feed(filled)  # ...and is measured while it does
        progress(measurement.size)
    return measurement.summary()
