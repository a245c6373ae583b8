"""Rendering an export to CSV bytes, streamed in batches.

Rows are written with the csv module (RFC 4180, QUOTE_MINIMAL) so commas,
quotes and embedded newlines are quoted exactly as a standards-following
producer would; the sha256, size and row count are computed on the way out,
which is what ``/__sandbox__/exports`` later reports without re-reading files.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, BinaryIO

from sandbox.contacts import Contact, ContactUniverse, Traits
from sandbox.exportspec import ExportSpec
from sandbox.fields import label
from sandbox.selection import candidates, make_filter

RENDER_BATCH_ROWS = 2_000
"""Contacts examined between writes and progress reports: big enough to amortise, small
enough that percent_done moves smoothly."""

UTF8_BOM = b"\xef\xbb\xbf"


class RenderCancelledError(Exception):
    """The sandbox is shutting down; the partial file is discarded."""


@dataclass(frozen=True)
class CsvFormat:
    """Byte-level options; part of the spool key because they change the file."""

    bom: bool = False
    crlf: bool = False

    @property
    def line_terminator(self) -> str:
        return "\r\n" if self.crlf else "\n"


@dataclass(frozen=True)
class ExportFileInfo:
    """Facts about a rendered file, so tests can check a download without re-rendering."""

    sha256: str
    bytes: int
    rows: int
    columns: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "bytes": self.bytes,
            "rows": self.rows,
            "columns": list(self.columns),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportFileInfo:
        return cls(
            sha256=str(data["sha256"]),
            bytes=int(data["bytes"]),
            rows=int(data["rows"]),
            columns=tuple(str(c) for c in data["columns"]),
        )


ProgressCallback = Callable[[int, int], None]
"""Called with (contacts examined, rows written) after each batch."""


class _HashingSink:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._digest.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def render_csv(
    universe: ContactUniverse,
    spec: ExportSpec,
    fmt: CsvFormat,
    out: BinaryIO,
    *,
    on_progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExportFileInfo:
    """Write the export for ``spec`` to ``out`` and describe what was written."""
    sink = _HashingSink(out)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=fmt.line_terminator, quoting=csv.QUOTE_MINIMAL)
    columns = tuple(label(f) for f in spec.fields)
    positions = [Contact._fields.index(f.value) for f in spec.fields]
    pick = itemgetter(*positions) if len(positions) > 1 else lambda c: (c[positions[0]],)
    keep = make_filter(universe, spec)
    if fmt.bom:
        sink.write(UTF8_BOM)
    writer.writerow(columns)
    rows = 0
    examined = 0
    todo = candidates(universe, spec)
    build = universe.contact_from
    for start in range(0, len(todo), RENDER_BATCH_ROWS):
        batch = todo[start : start + RENDER_BATCH_ROWS]
        traits: Iterable[Traits] = map(universe.traits, batch)
        if keep is not None:
            traits = filter(keep, traits)
        chosen = [pick(build(t)) for t in traits]
        writer.writerows(chosen)
        rows += len(chosen)
        examined += len(batch)
        _drain(buffer, sink)
        if cancelled is not None and cancelled():
            raise RenderCancelledError
        if on_progress is not None:
            on_progress(examined, rows)
    _drain(buffer, sink)
    if on_progress is not None:
        on_progress(examined, rows)
    return ExportFileInfo(sha256=sink.hexdigest(), bytes=sink.size, rows=rows, columns=columns)


def _drain(buffer: io.StringIO, sink: _HashingSink) -> None:
    data = buffer.getvalue()
    if data:
        sink.write(data.encode("utf-8"))
        buffer.seek(0)
        buffer.truncate(0)
