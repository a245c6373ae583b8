"""copy_measured: the in-place path and the chunk path measure the same bytes the same way."""

from __future__ import annotations

import hashlib
import io
import itertools

import pytest

from workers.transfer import copy_measured

PART = 1000
CSV = b"Name,Notes\n" + b"".join(b'n%d,"x\ny"\n' % i for i in range(3000))


class PartBuffers:
    """A sink that lends part buffers like MultipartWriter does, keeping what it was given."""

    def __init__(self, part_size: int = PART) -> None:
        self.part_size = part_size
        self.parts: list[bytes] = []
        self._buffer = bytearray(part_size)
        self._filled = 0
        self.commits = 0

    def free_space(self) -> memoryview:
        return memoryview(self._buffer)[self._filled :]

    def commit(self, count: int) -> None:
        self.commits += 1
        self._filled += count
        if self._filled == self.part_size:
            self.parts.append(bytes(self._buffer))
            self._filled = 0

    def data(self) -> bytes:
        return b"".join(self.parts) + bytes(self._buffer[: self._filled])


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data


class Chunked:
    """A chunk iterator that names its source, as ResultsBody.chunks does."""

    def __init__(self, source: io.BytesIO) -> None:
        self.source = source

    def __iter__(self) -> Chunked:
        return self

    def __next__(self) -> bytes:
        raise AssertionError("the in-place path must read the source, not iterate")


def test_a_reader_fills_the_sinks_buffers_in_place() -> None:
    sink = PartBuffers()
    summary = copy_measured(io.BytesIO(CSV), sink)
    assert sink.data() == CSV
    assert summary.size == len(CSV)
    assert summary.sha256 == hashlib.sha256(CSV).hexdigest()
    assert summary.rows == 3000
    assert summary.columns == ["Name", "Notes"]
    # One read per part: whole parts, not small chunks.
    assert sink.commits == -(-len(CSV) // PART)


def test_chunks_that_name_their_source_take_the_in_place_path() -> None:
    sink = PartBuffers()
    summary = copy_measured(Chunked(io.BytesIO(CSV)), sink)
    assert sink.data() == CSV
    assert summary.rows == 3000


def test_plain_chunks_into_a_writer_give_the_same_summary() -> None:
    sink = Collect()
    pieces = [CSV[i : i + 777] for i in range(0, len(CSV), 777)]
    summary = copy_measured(pieces, sink)
    assert bytes(sink.data) == CSV
    assert summary == copy_measured(io.BytesIO(CSV), PartBuffers())


def test_progress_is_reported_as_bytes_pass() -> None:
    seen: list[int] = []
    copy_measured(io.BytesIO(CSV), PartBuffers(), on_progress=seen.append, progress_every=5000)
    assert seen and seen == sorted(seen)
    assert all(b - a >= 5000 for a, b in itertools.pairwise(seen))


def test_a_reader_needs_a_sink_that_lends_buffers() -> None:
    with pytest.raises(TypeError):
        copy_measured(io.BytesIO(CSV), Collect())
