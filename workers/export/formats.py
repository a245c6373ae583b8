"""The formats an export is stored in, and the streaming conversion from Constant Contact's CSV.

``csv`` (the default) is Constant Contact's bytes, unchanged. The others rename the columns to
field names (``workers.export.columns``) and compress, streaming: the CSV is parsed row by row
as it arrives and the output leaves in chunks, so memory stays bounded at any size.

- ``csv.gz``, ``csv.zst``: the same rows and text values under the new names, gzip (level 6) or
  zstd (level 3, ``zstandard``).
- ``jsonl.gz``: one JSON object per row, gzip, with typed values: ISO 8601 UTC timestamps,
  ISO dates, integers, booleans, empty cells as null.
- ``parquet``: the same types in Parquet (``pyarrow``), in row groups of ``ROW_GROUP_ROWS``.

zstandard and pyarrow are the libraries made for these formats (pyarrow is the reference Parquet
writer, zstandard the binding of the reference zstd); both are the ``formats`` extra and are
imported only when a job asks for their format. The stored object is a file, not an HTTP
encoding: ``Content-Type`` names the container (``application/gzip``, ...) and no
``Content-Encoding`` is set, so every reader gets the bytes the result's sha256 describes.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from workers.export.columns import Column, columns_of
from workers.export.progress import iso_utc

#: Rows per Parquet row group: memory is about this many rows of every column.
ROW_GROUP_ROWS = 8_000
#: Rows converted before their output is handed on (text formats).
ROWS_PER_CHUNK = 2_000
GZIP_LEVEL = 6
ZSTD_LEVEL = 3


@dataclass(frozen=True)
class Format:
    name: str
    #: What ``{ext}`` in a key template becomes.
    extension: str
    content_type: str


FORMATS = {
    "csv": Format("csv", "csv", "text/csv"),
    "csv.gz": Format("csv.gz", "csv.gz", "application/gzip"),
    "csv.zst": Format("csv.zst", "csv.zst", "application/zstd"),
    "jsonl.gz": Format("jsonl.gz", "jsonl.gz", "application/gzip"),
    "parquet": Format("parquet", "parquet", "application/vnd.apache.parquet"),
}
CSV = FORMATS["csv"]


class ConversionError(ValueError):
    """A value that does not fit its column's type (the message names the row and column)."""


class Converted:
    """The converted object as chunks of bytes, from ``chunks`` of Constant Contact's CSV (one
    header row); ``rows`` and ``columns`` once it is exhausted."""

    def __init__(self, fmt: Format, chunks: Iterable[bytes | bytearray]) -> None:
        self.format = fmt
        self._chunks = chunks
        self.rows = 0
        self.columns: list[Column] = []

    def __iter__(self) -> Iterator[bytes]:
        reader = csv.reader(_lines(self._chunks))
        header = next(reader, None)
        if header is None:
            return
        self.columns = columns_of(header)
        if self.format.name == "parquet":
            yield from self._parquet(reader)
            return
        compress = _compressor(self.format.name)
        for batch in _batches(reader, ROWS_PER_CHUNK):
            if self.format.name == "jsonl.gz":
                text = "".join(
                    json.dumps(self._typed(row), ensure_ascii=False, default=_json_value) + "\n"
                    for row in batch
                )
            else:
                text = _csv_text(([c.name for c in self.columns],) if self.rows == 0 else (), batch)
            self.rows += len(batch)
            out = compress.feed(text.encode())
            if out:
                yield out
        if self.rows == 0 and self.format.name != "jsonl.gz":
            out = compress.feed(_csv_text(([c.name for c in self.columns],), []).encode())
            if out:
                yield out
        yield compress.finish()

    def _typed(self, row: list[str]) -> dict[str, Any]:
        try:
            return {c.name: c.value(cell) for c, cell in zip(self.columns, row, strict=True)}
        except ValueError as error:
            raise ConversionError(f"row {self.rows + 1}: {error}") from None

    def _parquet(self, reader: Iterator[list[str]]) -> Iterator[bytes]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c.name, c.arrow_type()) for c in self.columns])
        sink = _Collected()
        with pq.ParquetWriter(sink, schema, compression="snappy") as writer:
            for batch in _batches(reader, ROW_GROUP_ROWS):
                typed = [self._typed(row) for row in batch]
                self.rows += len(batch)
                writer.write_table(pa.Table.from_pylist(typed, schema=schema))
                yield sink.take()
        yield sink.take()


def _json_value(value: Any) -> str:
    """Timestamps as ISO 8601 in UTC with milliseconds, dates as ISO dates."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _lines(chunks: Iterable[bytes | bytearray]) -> Iterator[str]:
    """The CSV's text as lines, ends kept, for ``csv.reader`` (which joins the lines of a quoted
    value itself); UTF-8 across chunk boundaries, a byte-order mark at the start dropped."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(bytes(chunk))
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _batches(reader: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    batch: list[list[str]] = []
    for row in reader:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _csv_text(header: tuple[list[str], ...], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([*header, *rows])
    return out.getvalue()


class _Compressor:
    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError


class _Gzip(_Compressor):
    def __init__(self) -> None:
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing

    def feed(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()


class _Zstd(_Compressor):
    def __init__(self) -> None:
        import zstandard

        self._z = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def feed(self, data: bytes) -> bytes:
        return bytes(self._z.compress(data))

    def finish(self) -> bytes:
        return bytes(self._z.flush())


def _compressor(name: str) -> _Compressor:
    return _Zstd() if name.endswith(".zst") else _Gzip()


class _Collected(io.RawIOBase):
    """A write-only file for pyarrow whose bytes are taken as they come."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self._position += len(view)
        return len(view)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        taken, self._buffer = bytes(self._buffer), bytearray()
        return taken
