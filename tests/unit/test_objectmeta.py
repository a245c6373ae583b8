"""What a process learns of its store's handling of aws-chunked uploads (``EncodingCheck``).

The behaviour of real stores is in tests/integration (rclone and SeaweedFS keep the encoding);
AWS S3 and MinIO, which drop it, are not on this machine: the client below answers as they do.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from workers.s3.objectmeta import EncodingCheck
from workers.s3.storage import StoredObject

STORED = StoredObject("b", "k.csv", 10, 1, etag='"e"')


class Heads:
    """Answers HEAD with the given Content-Encoding (None: the header is absent), or an error."""

    def __init__(self, encoding: str | None, *, fail: bool = False) -> None:
        self.encoding, self.fail, self.calls = encoding, fail, 0

    def head_object(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")
        head: dict[str, Any] = {"ContentLength": STORED.size}
        return head if self.encoding is None else {**head, "ContentEncoding": self.encoding}


def test_a_store_that_drops_the_encoding_costs_one_head_per_process() -> None:
    check, s3 = EncodingCheck(), Heads(None)
    assert [check.keeps_chunked(s3, STORED) for _ in range(3)] == [False] * 3  # type: ignore[arg-type]
    assert s3.calls == 1


def test_a_store_that_keeps_it_is_remembered() -> None:
    check, s3 = EncodingCheck(), Heads("aws-chunked")
    assert check.keeps_chunked(s3, STORED) and check.keeps_chunked(s3, STORED)  # type: ignore[arg-type]
    assert s3.calls == 1


def test_a_head_that_fails_decides_nothing() -> None:
    check, failing = EncodingCheck(), Heads("aws-chunked", fail=True)
    assert not check.keeps_chunked(failing, STORED)  # type: ignore[arg-type]
    assert check.keeps is None
    assert check.keeps_chunked(Heads("aws-chunked"), STORED)  # type: ignore[arg-type]
