"""What a process learns of its store's handling of aws-chunked uploads (``EncodingCheck``).

The behaviour of real stores is in tests/integration (rclone and SeaweedFS keep the encoding);
AWS S3 and MinIO, which drop it, are not on this machine: the client below answers as they do.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from workers.exceptions import StorageError, StreamRefused
from workers.s3.objectmeta import EncodingCheck
from workers.s3.storage import StoredObject

STORED = StoredObject("b", "k.csv", 10, 1, etag='"e"')


class Heads:
    """Answers HEAD with the given Content-Encoding (None: the header is absent), or an error."""

    def __init__(self, encoding: str | None, *, fail: int | None = None) -> None:
        self.encoding, self.fail, self.calls = encoding, fail, 0
        self.length: int | None = STORED.size

    def head_object(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.fail is not None:  # a HEAD's error has no body: botocore names it by status
            answer: Any = {
                "Error": {"Code": str(self.fail)},
                "ResponseMetadata": {"HTTPStatusCode": self.fail},
            }
            raise ClientError(answer, "HeadObject")
        head: dict[str, Any] = {} if self.length is None else {"ContentLength": self.length}
        return head if self.encoding is None else {**head, "ContentEncoding": self.encoding}


def test_a_store_that_drops_the_encoding_costs_one_head_per_process() -> None:
    check, s3 = EncodingCheck(), Heads(None)
    assert [check.keeps_chunked(s3, STORED) for _ in range(3)] == [False] * 3  # type: ignore[arg-type]
    assert s3.calls == 1


def test_a_store_that_keeps_it_is_remembered() -> None:
    check, s3 = EncodingCheck(), Heads("aws-chunked")
    assert check.keeps_chunked(s3, STORED) and check.keeps_chunked(s3, STORED)  # type: ignore[arg-type]
    assert s3.calls == 1


def test_a_head_that_fails_decides_nothing_and_the_object_is_not_taken_unchecked() -> None:
    check, failing = EncodingCheck(), Heads("aws-chunked", fail=503)
    with pytest.raises(StorageError, match="cannot be checked") as failed:
        check.keeps_chunked(failing, STORED)  # type: ignore[arg-type]
    assert not isinstance(failed.value, StreamRefused) and not failed.value.permanent  # retried
    assert check.keeps is None
    assert check.keeps_chunked(Heads("aws-chunked"), STORED)  # type: ignore[arg-type]


def test_a_head_that_is_forbidden_refuses_the_streaming_put() -> None:
    """Without s3:GetObject nothing streamed can be checked; parts need no check."""
    with pytest.raises(StreamRefused, match="cannot be read back"):
        EncodingCheck().keeps_chunked(Heads("aws-chunked", fail=403), STORED)  # type: ignore[arg-type]


@pytest.mark.parametrize("kept", [STORED.size + 56, None])
def test_an_object_of_another_size_than_the_content_is_refused(kept: int | None) -> None:
    """A store that knows no aws-chunked keeps the framing: 56 bytes more, here."""
    check, s3 = EncodingCheck(), Heads(None)
    s3.length = kept
    with pytest.raises(StreamRefused, match="does not decode aws-chunked"):
        check.keeps_chunked(s3, STORED)  # type: ignore[arg-type]
    assert check.keeps is None  # nothing learnt of its encoding; the caller refuses the store
