"""The formats an export is stored in, and the streaming conversion from Constant Contact's CSV.

``csv`` (the default) is Constant Contact's bytes, unchanged. The others name the columns by
field (``workers.export.columns``) and compress, streaming: the output leaves in chunks as the
CSV arrives, so memory stays bounded at any size.

- ``csv.gz``, ``csv.zst``: the same rows and text values under the new names, gzip (level 6) or
  zstd (level 3, ``zstandard``). Only the header record changes, so the rows after it are
  Constant Contact's bytes, passed to the compressor as they come: the cost is the compressor's
  own, with the row count (``workers.csvstats``), which the ``csv`` format pays as well, beside
  it on a thread of its own.
- ``jsonl.gz``: one JSON object per row, gzip, with typed values: ISO 8601 UTC timestamps,
  ISO dates, integers, booleans, empty cells as null.
- ``parquet``: the same types in Parquet, in row groups of ``ROW_GROUP_ROWS``.

The typed two parse with pyarrow's CSV reader and convert whole columns with Arrow's
kernels (``workers.export.typed``). zstandard and pyarrow are the libraries made for these
formats (pyarrow is the reference Parquet writer and a fast CSV reader, zstandard the binding of
the reference zstd); both are the ``formats`` extra and are imported only when a job asks for
their format. The stored object is a file, not an HTTP encoding: ``Content-Type`` names the
container (``application/gzip``, ...) and no ``Content-Encoding`` is set, so every reader gets
the bytes the result's sha256 describes.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import itertools
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from workers.csvstats import MAX_HEADER_BYTES, CsvStats, header_end, header_fields
from workers.exceptions import ConversionError, HeaderTooLong
from workers.export.columns import Column, columns_of

#: Rows per Parquet row group: memory is about this many rows of every column.
ROW_GROUP_ROWS = 8_000
#: Chunks the row count may lag behind the compressor: what it holds on to at most.
COUNT_AHEAD_CHUNKS = 2
GZIP_LEVEL = 6
ZSTD_LEVEL = 3


@dataclass(frozen=True)
class Format:
    name: str
    #: What ``{ext}`` in a key template becomes.
    extension: str
    content_type: str
    #: The optional libraries (the ``formats`` extra) the conversion imports.
    modules: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        """Those of ``modules`` this process cannot import: a job asking for this format is
        refused before any API call, rather than failing after the download began."""
        return [name for name in self.modules if importlib.util.find_spec(name) is None]


FORMATS = {
    "csv": Format("csv", "csv", "text/csv"),
    "csv.gz": Format("csv.gz", "csv.gz", "application/gzip"),
    "csv.zst": Format("csv.zst", "csv.zst", "application/zstd", ("zstandard",)),
    "jsonl.gz": Format("jsonl.gz", "jsonl.gz", "application/gzip", ("pyarrow",)),
    "parquet": Format("parquet", "parquet", "application/vnd.apache.parquet", ("pyarrow",)),
}
CSV = FORMATS["csv"]


class Converted:
    """The converted object as chunks of bytes, from ``chunks`` of Constant Contact's CSV (one
    header row); ``rows`` and ``columns`` once it is exhausted. A chunk must not be changed once
    yielded: the row count may still be reading it on its own thread."""

    def __init__(self, fmt: Format, chunks: Iterable[bytes | bytearray]) -> None:
        self.format = fmt
        self._chunks = chunks
        self.rows = 0
        self.columns: list[Column] = []

    def __iter__(self) -> Iterator[bytes | memoryview]:
        header, body = split_header(self._chunks)
        if header is None:
            return
        self.columns = columns_of(header_names(header))
        if self.format.name == "parquet":
            yield from self._parquet(body)
        elif self.format.name == "jsonl.gz":
            yield from self._jsonl(body)
        else:
            yield from self._renamed(header, body)

    def _renamed(self, header: bytes, body: Iterator[bytes | bytearray]) -> Iterator[bytes]:
        """The new header, then the rows as they came.

        The rows are counted on a thread of their own while the compressor takes the same
        chunks: both release the GIL, so on two cores the count costs no time beside zstd (it
        was a tenth of the conversion: bench/formats.py, csv.zst). A chunk is never changed
        once read (each is a new buffer), so both may read it at once.
        """
        compress = _compressor(self.format.name)
        newline = "\r\n" if header.endswith(b"\r\n") else "\n"
        stats = CsvStats()
        stats.feed(header)
        yield compress.feed(_csv_line([c.name for c in self.columns], newline).encode())
        with ThreadPoolExecutor(1, thread_name_prefix="csv-rows") as counter:
            counted: deque[Future[None]] = deque()
            for chunk in body:
                counted.append(counter.submit(stats.feed, chunk))
                if len(counted) > COUNT_AHEAD_CHUNKS:
                    counted.popleft().result()  # bounds the chunks held for the count
                out = compress.feed(chunk)
                if out:
                    yield out
            for pending in counted:
                pending.result()
        self.rows = stats.rows
        yield compress.finish()

    def _jsonl(self, body: Iterator[bytes | bytearray]) -> Iterator[bytes]:
        from workers.export.typed import json_lines, typed_batches

        compress = _Gzip()
        for batch in typed_batches(self.columns, body):
            self.rows += batch.num_rows
            out = compress.feed(json_lines(self.columns, batch))
            if out:
                yield out
        yield compress.finish()

    def _parquet(self, body: Iterator[bytes | bytearray]) -> Iterator[bytes]:
        """Batches gathered into row groups of ROW_GROUP_ROWS, each written as it fills."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from workers.export.typed import schema, typed_batches

        sink = _Collected()
        group: list[Any] = []
        with pq.ParquetWriter(sink, schema(self.columns), compression="snappy") as writer:
            for batch in typed_batches(self.columns, body):
                group.append(batch)
                self.rows += batch.num_rows
                if sum(b.num_rows for b in group) >= ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(group))  # one row group
                    group = []
                    yield sink.take()
            if group:
                writer.write_table(pa.Table.from_batches(group))  # one row group
        yield sink.take()


def split_header(
    chunks: Iterable[bytes | bytearray],
) -> tuple[bytes | None, Iterator[bytes | bytearray]]:
    """The CSV's first record (with its line break) and the chunks after it; None for no bytes.

    A quoted header value may hold a line break, so the record ends at the first one outside
    quotes, wherever the chunks split it.
    """
    source = iter(chunks)
    head = bytearray()
    for chunk in source:
        head += chunk
        end = header_end(head)
        if end is not None:
            rest = bytes(head[end + 1 :])
            return bytes(head[: end + 1]), itertools.chain([rest] if rest else [], source)
        if len(head) > MAX_HEADER_BYTES:
            raise HeaderTooLong(f"the results' header row is longer than {MAX_HEADER_BYTES} bytes")
    return (bytes(head) if head else None), iter(())


def header_names(header: bytes) -> list[str]:
    """The labels of a header record, which name the converted columns: they must be UTF-8."""
    try:
        return header_fields(header)
    except UnicodeDecodeError as error:
        raise ConversionError(f"the results' header row is not UTF-8: {error}") from None


def _csv_line(values: list[str], newline: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerow(values)
    return out.getvalue()


class _Compressor:
    def feed(self, data: Any) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError


class _Gzip(_Compressor):
    def __init__(self) -> None:
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing

    def feed(self, data: Any) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()


class _Zstd(_Compressor):
    def __init__(self) -> None:
        import zstandard

        self._z = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def feed(self, data: Any) -> bytes:
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
