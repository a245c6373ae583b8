"""Streaming writer of one S3 object by multipart upload, in bounded memory.

Bytes are gathered into part buffers of a fixed size, allocated once and reused: a full part goes
to a small thread pool while the next one fills, and a buffer comes back when its upload ends.
At most ``parts_in_flight + 1`` buffers ever exist, so memory is bounded by part size x (parts in
flight + 1), never by the object's size; when every buffer is busy the writer blocks, and so does
the download feeding it. The object becomes visible only when ``complete`` is called; any failure
before that aborts the upload, so no partial object is ever readable.

A part is handed to botocore as the bytearray itself: urllib3 sends a buffer in one ``sendall``
(the GIL released), where ``bytes`` would be wrapped in a BytesIO and sent 16 KiB at a time after
a ``100-continue`` round trip, and fresh buffers per part would page-fault 8 MiB each time. A
buffer is made by ``workers.malloc.part_buffer``: not zero-filled, its pages faulted in by the
download that fills them (huge pages where the kernel allows), so a small export touches only the
pages it writes.

Integrity, per part (the whole stream's sha256 is computed by ``workers.transfer``):

- ``S3_CHECKSUM=when_supported`` (default): every part carries its CRC32C (or, with
  ``S3_CHECKSUM_ALGORITHM=crc32``, CRC32; see ``workers.s3.checksums``), which AWS S3, MinIO and
  SeaweedFS check. ``rclone serve s3`` ignores it (it checks only Content-MD5).
- ``S3_CONTENT_MD5=true``: the client sends Content-MD5 of every part, which every S3 store checks,
  rclone included; it costs an MD5 pass (~700 MiB/s, outside the GIL) per part.
- Payload signing (``S3_PAYLOAD_SIGNING``): SigV4 can sign the sha256 of each part body, a second
  full hash pass. ``auto`` signs only where nothing else protects the body: on ``https`` TLS does,
  and on ``http`` a checksum the server checks does; ``http`` without CRC32 or MD5 stays signed.
  ``always`` signs every part whatever the scheme.

An https endpoint whose certificate the worker does not trust fails with a StorageError that says
so and names AWS_CA_BUNDLE (``untrusted_certificate``), not with botocore's bare SSL error.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import queue
import ssl
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import SSLError as BotocoreSSLError

from contact_exports_client.redis_tls import causes
from workers.exceptions import StorageError
from workers.malloc import part_buffer
from workers.s3.checksums import Checksum, sends_checksums

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from workers.settings import Settings

#: S3's smallest part (all but the last); smaller parts are refused at completion.
MIN_PART_SIZE = 5 * 1024 * 1024
#: botocore's own retries per request (standard mode) before a part counts as failed.
S3_MAX_ATTEMPTS = 5
#: Connections beyond the part uploads: create, complete and abort calls of the same client.
SPARE_CONNECTIONS = 4


def payload_signing(settings: Settings) -> bool:
    """Whether SigV4 signs each part's sha256: only where no transport or checksum protects it."""
    if settings.s3_payload_signing == "always":
        return True
    https = settings.s3_endpoint_url is None or settings.s3_endpoint_url.scheme == "https"
    checked = settings.s3_checksum == "when_supported" or settings.s3_content_md5
    return not (https or checked)


def make_s3_client(settings: Settings, session: boto3.Session | None = None) -> S3Client:
    """A client for AWS or, with S3_ENDPOINT_URL, any S3-compatible store (path-style).

    Credentials come from ``session`` (tests pass one) or boto3's usual chain.
    """
    config = Config(
        s3={"addressing_style": "path", "payload_signing_enabled": payload_signing(settings)},
        request_checksum_calculation=settings.s3_checksum,
        response_checksum_validation=settings.s3_checksum,
        retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=settings.s3_parts_in_flight + SPARE_CONNECTIONS,
    )
    endpoint = str(settings.s3_endpoint_url) if settings.s3_endpoint_url else None
    client = (session or boto3.Session()).client(
        "s3", endpoint_url=endpoint, region_name=settings.aws_default_region, config=config
    )
    client.meta.events.register("before-call.s3.UploadPart", declare_part_as_bytes)
    if settings.s3_content_md5:
        client.meta.events.register("before-call.s3.UploadPart", add_content_md5)
    return client


#: What S3 answers that no later attempt can change: the credentials or the bucket are wrong.
#: A StorageError for it is ``permanent``, so the retry policy gives up at once.
PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "NoSuchBucket",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
    }
)


def answer_of(error: BaseException) -> tuple[int | None, str]:
    """The HTTP status and S3 error code of a store's refusal (a ClientError); (None, "") for
    any other failure, where the store answered nothing."""
    if not isinstance(error, ClientError):
        return None, ""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status, str(error.response.get("Error", {}).get("Code", ""))


def forbidden(error: BaseException) -> bool:
    """A 403. A HEAD's refusal has no body, so botocore names it "403", not AccessDenied."""
    status, code = answer_of(error)
    return status == 403 or code in ("403", "AccessDenied")


def storage_error(message: str, error: BaseException) -> StorageError:
    """The StorageError for an S3 call that failed with ``error`` (after boto3's own retries).

    It is ``permanent`` when no later attempt can change the answer: a refusal in
    PERMANENT_CODES, or a server certificate the worker does not trust (the message then says
    how to trust it). Anything else (a server that is down or overloaded, a dropped connection)
    the retry policy tries again later.
    """
    untrusted = untrusted_certificate(error)
    _, code = answer_of(error)
    return StorageError(
        f"{message}: {untrusted or error}",
        permanent=untrusted is not None or code in PERMANENT_CODES,
    )


def untrusted_certificate(error: BaseException) -> str | None:
    """If ``error`` is (or was caused by) a failed check of the S3 server's TLS certificate, what
    to tell the operator; else None.

    botocore reports it as its SSLError (a ConnectionError, so retried first), wrapping urllib3's
    and, at the bottom, ``ssl.SSLCertVerificationError``; other TLS failures (a handshake with a
    plain-http server, say) are not about trust and get None.
    """
    endpoint, reason = "", None
    for current in causes(error):
        if isinstance(current, BotocoreSSLError) and not endpoint:
            url = urlsplit(str(current.kwargs.get("endpoint_url", "")))
            endpoint = f"{url.scheme}://{url.netloc}: " if url.netloc else ""
            if "CERTIFICATE_VERIFY_FAILED" in str(current):
                reason = reason or "certificate verify failed"
        if isinstance(current, ssl.SSLCertVerificationError):
            reason = f"certificate verify failed: {current.verify_message or current}"
    if reason is None:
        return None
    return (
        f"S3 server's TLS certificate is not trusted ({endpoint}{reason}); "
        "set AWS_CA_BUNDLE to its CA"
    )


#: What every part's body is declared as: its bytes, not the object's type.
PART_CONTENT_TYPE = "application/octet-stream"


def declare_part_as_bytes(params: dict[str, Any], **_: Any) -> None:
    """botocore hook: every part upload says ``Content-Type: application/octet-stream``.

    The object's type is the one its upload was created with; S3 has no type per part and
    ignores the header there, as MinIO and rclone do, so what it costs elsewhere is nothing.
    What it saves on SeaweedFS is a quarter of the store's CPU: its gateway sniffs a part sent
    without a type, finds text, gzips the part, and its volume server gunzips it again to check
    its MD5; a part declared as bytes is compressed once, where it is stored. Measured side by
    side on a 512 MiB CSV in 16 MiB parts (``bench/store_cost.py``; docs/performance-history.md,
    "Parts declared as bytes"): 14.1 against 18.8 CPU-s/GiB of the store, 123 against 93 MiB/s.
    rclone's client (the AWS SDK for Go) sends every part so, which is why its multipart uploads
    into SeaweedFS never paid it.
    """
    params["headers"].setdefault("Content-Type", PART_CONTENT_TYPE)


def add_content_md5(params: dict[str, Any], **_: Any) -> None:
    """botocore hook: Content-MD5 of an in-memory part body, computed before the request is signed.

    A property of the client rather than of the writer, so every part upload of a configured
    client carries it. Bodies that are streams are left alone (MultipartWriter sends buffers).
    """
    body = params.get("body")
    if isinstance(body, bytes | bytearray) and "Content-MD5" not in params["headers"]:
        params["headers"]["Content-MD5"] = base64.b64encode(
            hashlib.md5(body, usedforsecurity=False).digest()
        ).decode()


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    parts: int
    #: The ETag S3 gave the completed object, to make sure later copies read this very object.
    etag: str | None = None
    #: Whether its metadata already carries the measured figures (``workers.s3.objectmeta``).
    sealed: bool = False

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
        extra: dict[str, Any] | None = None,
        checksum: Checksum,
        allocate: Callable[[int], bytearray] = part_buffer,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if parts_in_flight < 1:
            raise ValueError("parts_in_flight must be at least 1")
        self._client = client
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self._metadata = metadata or {}
        self._content_type = content_type
        #: More CreateMultipartUpload arguments (encryption, storage class, tags).
        self._extra = extra or {}
        self._checksum = checksum
        #: Settled once: the upload is created for the algorithm only if every part carries it.
        self._sends_checksums = sends_checksums(client)
        #: One buffer fills while the others upload; allocated on demand, never more.
        self.max_buffers = parts_in_flight + 1
        self.buffers_allocated = 0
        #: Makes a part buffer; its bytes are never read before the download writes them.
        self._allocate = allocate
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._current: bytearray | None = None
        self._filled = 0
        self._pool = ThreadPoolExecutor(parts_in_flight, thread_name_prefix="s3-part")
        self._futures: list[Future[dict[str, Any]]] = []
        self._size = 0
        self.upload_id: str | None = None
        self._closed = False
        #: The first part upload's failure, set by the pool thread before it frees the buffer.
        self._error: BaseException | None = None

    def __enter__(self) -> MultipartWriter:
        self.upload_id = self._call(
            "create_multipart_upload",
            Bucket=self.bucket,
            Key=self.key,
            ContentType=self._content_type,
            Metadata=self._metadata,
            # S3 takes parts with checksums only of an upload created for that algorithm.
            **({"ChecksumAlgorithm": self._checksum.name} if self._sends_checksums else {}),
            **self._extra,
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

    # -- filling parts -----------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` into part buffers, sending each one that fills."""
        with memoryview(data) as source:
            source_bytes = source.cast("B") if source.format != "B" else source
            offset = 0
            while offset < len(source_bytes):
                with self.free_space() as space:
                    count = min(len(space), len(source_bytes) - offset)
                    space[:count] = source_bytes[offset : offset + count]
                self.commit(count)
                offset += count

    def free_space(self) -> memoryview:
        """The unfilled rest of the current part buffer, for a reader to fill in place.

        The view may be read after ``commit`` (the part uploads meanwhile; its buffer is reused
        only by a later ``free_space``), but must be released (``with`` or ``.release()``) before
        the next ``free_space`` or ``complete``. Blocks while every buffer is uploading: this is
        what bounds memory and slows the reader to the upload.
        """
        if self._current is None:
            self._current = self._take_buffer()
            self._filled = 0
        return memoryview(self._current)[self._filled :]

    def commit(self, count: int) -> None:
        """Count ``count`` more bytes of the current buffer as filled; a full part is sent."""
        if self._current is None or self._filled + count > self.part_size:
            raise ValueError("commit past the end of the part buffer")
        self._filled += count
        self._size += count
        if self._filled == self.part_size:
            self._send_current()

    def _take_buffer(self) -> bytearray:
        self._raise_failed_part()
        if self.buffers_allocated < self.max_buffers:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                self.buffers_allocated += 1
                return self._allocate(self.part_size)
        buffer = self._free.get()
        self._raise_failed_part()
        return buffer

    def _send_current(self) -> None:
        buffer, filled = self._current, self._filled
        assert buffer is not None
        self._current, self._filled = None, 0
        if filled < len(buffer):
            del buffer[filled:]  # the last part: shrunk in place, so sent without a copy
        number = len(self._futures) + 1
        # Computed here, in the reading thread, not by the upload thread: there it would stall
        # every upload after the first (zlib's CRC32 took 2.5 ms per 16 MiB on its own, and left
        # 3-7 ms gaps between parts; CRC32C takes a fifth of that).
        checksum = self._checksum.of(buffer) if self._sends_checksums else {}
        self._futures.append(self._pool.submit(self._upload_part, number, buffer, checksum))

    def _upload_part(
        self, number: int, body: bytearray, checksum: dict[str, str]
    ) -> dict[str, Any]:
        try:
            return self._send_part(number, body, checksum)
        finally:
            # Back for reuse, also after a failure: a writer waiting for a buffer wakes and sees it.
            self._free.put(body)

    def _send_part(self, number: int, body: bytearray, checksum: dict[str, str]) -> dict[str, Any]:
        try:
            answer = self._call(
                "upload_part",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=body,
                **checksum,
            )
        except BaseException as error:
            self._error = error
            raise
        # The complete call lists each part's checksum, as S3 requires of an upload created with
        # an algorithm: the one sent, not the answer's echo (a store may check and not echo it).
        return {"PartNumber": number, "ETag": answer["ETag"], **checksum}

    def _raise_failed_part(self) -> None:
        """Stop the writer at the first failed part: no point sending the ones after it."""
        if self._error is not None:
            raise self._error

    # -- finishing ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    def complete(self) -> StoredObject:
        """Upload what is buffered, wait for every part, then make the object visible."""
        if self._current is not None and self._filled:
            self._send_current()
        elif not self._futures:
            # An empty object is still one (empty) part.
            self._current, self._filled = bytearray(0), 0
            self._send_current()
        self._current = None
        parts = [future.result() for future in self._futures]
        answer = self._call(
            "complete_multipart_upload",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._closed = True
        self._pool.shutdown()
        return StoredObject(self.bucket, self.key, self._size, len(parts), answer.get("ETag"))

    def abort(self) -> None:
        """Drop every uploaded part; safe to call more than once."""
        self._closed = True
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True)
        self._current = None
        while not self._free.empty():
            self._free.get_nowait()
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
            failed = f"S3 {operation} failed for s3://{self.bucket}/{self.key}"
            raise storage_error(failed, error) from error
        return result
