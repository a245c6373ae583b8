"""MultipartWriter fed by copy_measured: every byte stored in order from reused buffers, measured.

S3 is a stand-in here (what is sent is all that matters); the writer against a real S3 server is
in tests/integration/test_storage_rclone.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

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


def test_parts_are_stored_in_order_from_two_reused_buffers() -> None:
    s3 = FakeS3()
    with MultipartWriter(s3, "b", "k", part_size=PART, parts_in_flight=1) as writer:  # type: ignore[arg-type]
        writer.write(DATA)
        stored = writer.complete()
    assert s3.stored() == DATA
    assert stored.parts == 5 and stored.size == len(DATA)
    assert writer.buffers_allocated == 2


def test_copy_measured_measures_each_part_where_it_lies() -> None:
    s3 = FakeS3()
    with MultipartWriter(s3, "b", "k", part_size=PART, parts_in_flight=1) as writer:  # type: ignore[arg-type]
        summary = copy_measured(io.BytesIO(DATA), writer)
        writer.complete()
    assert summary.size == len(DATA) == len(s3.stored())
    assert summary.sha256 == hashlib.sha256(DATA).hexdigest()
    assert summary.rows == len(list(csv.reader(io.StringIO(DATA.decode(), newline="")))) - 1
    assert summary.columns == ["id", "note"]
