"""MultipartWriter's observer: every committed byte, in order, never from a buffer being refilled.

S3 is a stand-in here (what is sent is all that matters); the writer against a real S3 server is
in tests/integration/test_storage_rclone.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from typing import Any

import pytest

from workers.storage import MIN_PART_SIZE, MultipartWriter
from workers.transfer import copy_measured

PART = MIN_PART_SIZE
#: Four and a half parts: the last one is short, and the two buffers are each reused.
DATA = (b"id,note\n" + b"".join(b'%d,"multi\nline"\n' % i for i in range(1_500_000)))[
    : PART * 4 + PART // 2
]


class FakeS3:
    """Takes parts as S3 would; ``on_part`` runs as each part arrives."""

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self.on_part = lambda number: None
        self.meta = type("Meta", (), {"config": object()})()

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"UploadId": "u-1"}

    def upload_part(self, *, PartNumber: int, Body: bytearray, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.parts[PartNumber] = bytes(Body)
        self.on_part(PartNumber)
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"ETag": '"done"'}

    def abort_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {}

    def stored(self) -> bytes:
        return b"".join(self.parts[n] for n in sorted(self.parts))


def test_the_observer_sees_every_byte_in_order_as_the_parts_are_stored() -> None:
    s3 = FakeS3()
    seen = bytearray()
    with MultipartWriter(s3, "b", "k", part_size=PART, parts_in_flight=1) as writer:  # type: ignore[arg-type]
        writer.observe(seen.extend)
        writer.write(DATA)
        writer.observed()
        writer.complete()
    assert bytes(seen) == DATA == s3.stored()


def test_a_buffer_is_not_refilled_while_its_observer_still_reads_it() -> None:
    """Part 3 reuses part 1's buffer, so it must wait for part 1's observation, however slow."""
    s3 = FakeS3()
    part_three_sent = threading.Event()
    s3.on_part = lambda number: part_three_sent.set() if number == 3 else None
    seen: list[bytes] = []

    def slow_observer(view: memoryview) -> None:
        if not seen:
            # Were the buffer handed back early, part 3 would be read into it meanwhile; the
            # wait ends by timeout when the writer is right, since part 3 waits for this call.
            part_three_sent.wait(timeout=0.5)
        seen.append(bytes(view))

    with MultipartWriter(s3, "b", "k", part_size=PART, parts_in_flight=1) as writer:  # type: ignore[arg-type]
        writer.observe(slow_observer)
        writer.write(DATA)
        writer.observed()
        writer.complete()
    assert b"".join(seen) == DATA
    assert writer.buffers_allocated == 2


def test_copy_measured_measures_through_the_observer() -> None:
    s3 = FakeS3()
    with MultipartWriter(s3, "b", "k", part_size=PART, parts_in_flight=2) as writer:  # type: ignore[arg-type]
        summary = copy_measured(io.BytesIO(DATA), writer)
        assert writer._observer is not None
        writer.complete()
    assert summary.size == len(DATA) == len(s3.stored())
    assert summary.sha256 == hashlib.sha256(DATA).hexdigest()
    assert summary.rows == len(list(csv.reader(io.StringIO(DATA.decode(), newline="")))) - 1


def test_an_observer_that_fails_is_reported_by_observed() -> None:
    s3 = FakeS3()

    def failing(view: memoryview) -> None:
        raise RuntimeError("cannot count")

    with MultipartWriter(s3, "b", "k", part_size=PART, parts_in_flight=2) as writer:  # type: ignore[arg-type]
        writer.observe(failing)
        writer.write(DATA)
        with pytest.raises(RuntimeError, match="cannot count"):
            writer.observed()


def test_observing_starts_before_the_first_byte() -> None:
    with MultipartWriter(FakeS3(), "b", "k", part_size=PART, parts_in_flight=1) as writer:  # type: ignore[arg-type]
        writer.write(b"id\n")
        with pytest.raises(ValueError, match="before the first commit"):
            writer.observe(lambda view: None)
