"""Streaming writer of one S3 object by multipart upload, in bounded memory.

Bytes are gathered into parts of a fixed size; full parts go to a small thread pool while the
next part fills, and at most ``parts_in_flight`` parts wait or travel at once. Memory is bounded
by part size x (parts in flight + 1), never by the object's size. The object becomes visible
only when ``complete`` is called; any failure before that aborts the upload, so no partial
object is ever readable.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from workers.exceptions import StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from workers.settings import Settings

#: S3's smallest part (all but the last); smaller parts are refused at completion.
MIN_PART_SIZE = 5 * 1024 * 1024
#: botocore's own retries per request (standard mode) before a part counts as failed.
S3_MAX_ATTEMPTS = 5


def make_s3_client(settings: Settings) -> S3Client:
    """A client for AWS or, with S3_ENDPOINT_URL, any S3-compatible store (path-style)."""
    config = Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation=settings.s3_checksum,
        response_checksum_validation=settings.s3_checksum,
        retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=settings.s3_parts_in_flight + 4,
    )
    endpoint = str(settings.s3_endpoint_url) if settings.s3_endpoint_url else None
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=settings.aws_default_region, config=config
    )


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    parts: int

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class MultipartWriter:
    """Use as a context manager: leaving it without ``complete()`` aborts the upload."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        part_size: int,
        parts_in_flight: int,
        metadata: dict[str, str] | None = None,
        content_type: str = "text/csv",
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self._client = client
        self.bucket = bucket
        self.key = key
        self._part_size = part_size
        self._metadata = metadata or {}
        self._content_type = content_type
        self._buffer = bytearray()
        self._slots = threading.BoundedSemaphore(parts_in_flight)
        self._pool = ThreadPoolExecutor(parts_in_flight, thread_name_prefix="s3-part")
        self._futures: list[Future[dict[str, Any]]] = []
        self._size = 0
        self.upload_id: str | None = None
        self._closed = False

    def __enter__(self) -> MultipartWriter:
        self.upload_id = self._call(
            "create_multipart_upload",
            Bucket=self.bucket,
            Key=self.key,
            ContentType=self._content_type,
            Metadata=self._metadata,
        )["UploadId"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._closed:
            self.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._submit(part)

    def _submit(self, part: bytes) -> None:
        self._raise_failed_part()
        # Blocks the reader while the pool is full: this is what bounds memory.
        self._slots.acquire()
        number = len(self._futures) + 1
        future = self._pool.submit(self._upload_part, number, part)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        answer = self._call(
            "upload_part",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
        )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        part.update({k: v for k, v in answer.items() if k.startswith("Checksum") and v})
        return part

    def _raise_failed_part(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                future.result()

    def complete(self) -> StoredObject:
        """Upload what is buffered, wait for every part, then make the object visible."""
        if self._buffer or not self._futures:
            self._submit(bytes(self._buffer))
            self._buffer = bytearray()
        parts = [future.result() for future in self._futures]
        self._call(
            "complete_multipart_upload",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._closed = True
        self._pool.shutdown()
        return StoredObject(self.bucket, self.key, self._size, len(parts))

    def abort(self) -> None:
        """Drop every uploaded part; safe to call more than once."""
        self._closed = True
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True)
        self._buffer = bytearray()
        if self.upload_id is not None:
            # The lifecycle rule (README) removes what a failed abort leaves.
            with contextlib.suppress(StorageError):
                self._call(
                    "abort_multipart_upload",
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                )

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as error:
            raise StorageError(
                f"S3 {operation} failed for s3://{self.bucket}/{self.key}: {error}"
            ) from error
        return result
