"""One streaming PUT for an object small enough, its checksum in an aws-chunked trailer.

Why not always a multipart upload: it pays a create and a complete call, and no byte uploads
while its first part fills. On rclone (bench/stream.py --levers, 64 and 512 MiB) one streaming
PUT reached 89 % and 91 % of curl's PUT of the same file, the multipart upload 79 % and 83 %.
Exports above S3_SINGLE_PUT_MAX_MIB stay multipart: a part that fails is sent again on its own,
where a PUT that fails starts the download over, and S3 takes at most 5 GiB in one PUT.

How: the body goes ``Content-Encoding: aws-chunked`` with ``x-amz-content-sha256:
STREAMING-UNSIGNED-PAYLOAD-TRAILER``, each chunk framed by its length, and the CRC32C (or CRC32,
``workers.s3.checksums``) of the whole object in the trailer, where AWS S3, MinIO and SeaweedFS
check it (rclone decodes the framing and ignores the checksum, as it ignores the parts').
``Content-Length`` is the encoded length, exact because every chunk but the last is full, as the
AWS SDK for Rust sends it (its ``AwsChunkedBodyOptions`` counts the trailer in); rclone refuses
``Transfer-Encoding: chunked`` (MissingContentLength). botocore's own trailer wrapper is not
used: it chooses it only on https, it sends chunked, and it re-slices a 1 MiB bytes object on
every read urllib3 makes (128 KiB). Here each read hands out a view of the chunk buffer, which
is read into in place and reused.

The object appears only once all its content has arrived (and, on S3, its trailer is checked):
a source that breaks, a body cut short, or ``before_end`` raising (the download lease was lost)
drops the connection before the last chunk is sent, and nothing is stored. botocore cannot
retry a streamed body; the task retries from the download. What made botocore want a retry is
kept (``ChunkedBody.send_error``), since its own error says only that the stream cannot rewind:
an https server whose certificate is not trusted is a StorageError saying so, not a retry.

Not every S3-compatible store takes this request. Some refuse it (REFUSAL_CODES: StreamRefused)
and some, knowing no aws-chunked, store the framing as the object's content; the download sends
such a store parts instead (``workers.s3.objectmeta.EncodingCheck`` learns which it is).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, UnseekableStreamError

from workers.exceptions import BodyIncomplete, StreamRefused, TransientError
from workers.s3.checksums import B64_LENGTH, Checksum
from workers.s3.storage import StoredObject, answer_of, storage_error, untrusted_certificate
from workers.transfer import PROGRESS_EVERY, Measurement, Progress, Readable, TransferSummary

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from workers.settings import Settings

#: Bytes per aws-chunked chunk: the unit read from the source, measured, and framed.
CHUNK_BYTES = 1024 * 1024
#: S3's largest single PUT.
MAX_PUT_BYTES = 5 * 1024**3
#: How stores that know no aws-chunked streaming PUT answer one (seen in S3 gateways' issue
#: trackers): 501 NotImplemented, AWS's word for a header implying what a store lacks; 400
#: InvalidRequest, InvalidArgument or AuthorizationHeaderMalformed, or XAmzContentSHA256Mismatch,
#: for a payload hash it cannot parse; 411 MissingContentLength; MalformedTrailerError. Not among
#: them: BadDigest and the checksum mismatches, which say the bytes went wrong on the way, and
#: SignatureDoesNotMatch, which says the credentials are (a permanent failure, storage.py). Some
#: of these may also answer a job's own object options (SSE-KMS over http, say): the download
#: believes the refusal for its store only once parts of the same export succeed.
REFUSAL_CODES = frozenset(
    {
        "NotImplemented",
        "InvalidRequest",
        "InvalidArgument",
        "AuthorizationHeaderMalformed",
        "XAmzContentSHA256Mismatch",
        "MissingContentLength",
        "MalformedTrailerError",
    }
)


def single_put_allowed(settings: Settings, size: int | None) -> bool:
    """Whether an object of ``size`` bytes goes in one streaming PUT rather than in parts.

    An empty body has no last chunk to hold back (see ChunkedBody). The trailer is the body's
    only checksum, so a configuration that asks for another (no checksum,
    Content-MD5 of every part, or signed payloads, none of which a stream can give before its
    end) keeps the multipart upload, where each part carries what was asked.
    """
    return (
        size is not None
        and 0 < size <= min(settings.s3_single_put_max_mib * 1024 * 1024, MAX_PUT_BYTES)
        and settings.s3_checksum == "when_supported"
        and not settings.s3_content_md5
        and settings.s3_payload_signing == "auto"
    )


def encoded_length(size: int, chunk_bytes: int, trailer: str) -> int:
    """Bytes on the wire for ``size`` bytes of content, framing and its ``trailer`` included."""
    full, rest = divmod(size, chunk_bytes)
    length = full * _framed(chunk_bytes) + (_framed(rest) if rest else 0)
    return length + len(f"0\r\n{trailer}:\r\n\r\n") + B64_LENGTH


def _framed(count: int) -> int:
    return len(b"%x\r\n" % count) + count + len(b"\r\n")


class ChunkedBody:
    """The aws-chunked encoding of ``source`` as a file-like body, measured as it is read.

    ``size`` is what the source announced; a source that ends short raises BodyIncomplete, so the
    server never sees all the content. ``before_end`` runs once, when the last chunk has been read
    and before any of it is sent: raising there abandons the PUT with content still missing.
    Withholding only the trailer would not do: rclone stores an object as soon as its announced
    content has arrived, trailer or not.
    """

    def __init__(
        self,
        source: Readable,
        size: int,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        checksum: Checksum,
        on_progress: Callable[[int], None] | None = None,
        before_end: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self.size = size
        self.checksum = checksum
        self.length = encoded_length(size, chunk_bytes, checksum.header)
        self._buffer = bytearray(chunk_bytes)
        self._pieces: deque[memoryview] = deque()
        self._crc = 0
        self._finished = False
        self._progress = Progress(on_progress, PROGRESS_EVERY)
        self._before_end = before_end
        self.measurement = Measurement()
        #: What a read raised: botocore takes it for a failed send and answers with its own
        #: error (an attempt to retry, which cannot rewind a stream).
        self.error: BaseException | None = None
        #: What failed the last send that botocore then wanted to retry (a dropped connection,
        #: an untrusted certificate): the cause its UnseekableStreamError does not carry.
        self.send_error: BaseException | None = None

    def read(self, size: int = -1) -> memoryview | bytes:
        try:
            return self._read(size)
        except BaseException as error:
            self.error = error
            raise

    def _read(self, size: int) -> memoryview | bytes:
        if not self._pieces and not self._finished:
            self._next_frame()
        if not self._pieces:
            return b""
        piece = self._pieces[0]
        if size < 0 or size >= len(piece):
            self._pieces.popleft()
            return piece
        self._pieces[0] = piece[size:]
        return piece[:size]

    def _next_frame(self) -> None:
        count = self._fill()
        if count:
            content = memoryview(self._buffer)[:count]
            self.measurement.feed(content)
            self._crc = self.checksum.update(content, self._crc)
            if self.measurement.size == self.size and self._before_end is not None:
                self._before_end()  # the last content bytes are not out yet
            self._pieces.extend((memoryview(b"%x\r\n" % count), content, memoryview(b"\r\n")))
            self._progress(self.measurement.size)
            return
        trailer = f"0\r\n{self.checksum.header}:{self.checksum.b64(self._crc)}\r\n\r\n"
        self._pieces.append(memoryview(trailer.encode()))
        self._finished = True

    def _fill(self) -> int:
        """The next chunk, full unless it is the last: Content-Length was computed so, and a
        source that ends early is an error here, before a short chunk could go out."""
        wanted = min(len(self._buffer), self.size - self.measurement.size)
        filled = 0
        with memoryview(self._buffer) as view:
            while filled < wanted:
                with view[filled:wanted] as rest:
                    count = self._source.readinto(rest)
                if count == 0:
                    raise BodyIncomplete(
                        f"results body has {self.measurement.size + filled} of {self.size}"
                        " announced bytes"
                    )
                filled += count
        return filled


def put_stream(
    client: S3Client,
    bucket: str,
    key: str,
    body: ChunkedBody,
    *,
    metadata: dict[str, str],
    content_type: str = "text/csv",
    extra: dict[str, Any] | None = None,
) -> tuple[TransferSummary, StoredObject]:
    """PUT ``body`` at ``key``; the object exists only if this returns. ``extra`` are more
    PutObject arguments (encryption, storage class, tags: ``ObjectOptions.write_args``)."""
    events = client.meta.events
    events.register("before-call.s3.PutObject", _announce_framing, unique_id=_ANNOUNCE)
    events.register("before-sign.s3.PutObject", _sign_as_trailer, unique_id=_SIGN)
    events.register("needs-retry.s3.PutObject", _keep_send_error, unique_id=_KEEP)
    try:
        answer: dict[str, Any] = dict(
            client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,  # type: ignore[arg-type]
                ContentLength=body.length,
                ContentEncoding="aws-chunked",
                ContentType=content_type,
                Metadata=metadata,
                **(extra or {}),
            )
        )
    except (ClientError, BotoCoreError) as error:
        if body.error is not None:
            raise body.error from error  # the source failed (or the lease was lost), not S3
        cause = body.send_error if isinstance(error, UnseekableStreamError) else None
        failed = f"S3 put_object failed for s3://{bucket}/{key}"
        refused = refusal(error)
        if refused is not None:
            message = f"{failed}: the store refuses a streaming PUT ({refused})"
            raise StreamRefused(message) from error
        if untrusted_certificate(cause or error) is not None:
            raise storage_error(failed, cause or error) from cause or error  # permanent
        if isinstance(error, UnseekableStreamError):
            # botocore found the failure worth a retry (a 5xx, a throttle, a dropped
            # connection) but cannot rewind a stream: the download starts over, after backoff.
            raise TransientError(f"{failed}: {cause or error}") from error
        raise storage_error(failed, error) from error
    summary = body.measurement.summary()
    return summary, StoredObject(bucket, key, summary.size, 1, answer.get("ETag"))


def refusal(error: BaseException) -> str | None:
    """What in the store's answer says it does not take a streaming PUT at all (its status and
    code, see REFUSAL_CODES), or None for any other failure."""
    status, code = answer_of(error)
    if code in REFUSAL_CODES or status == 501:
        return f"{status} {code}".strip()
    return None


_ANNOUNCE = "contact-exports.streamput.announce"
_SIGN = "contact-exports.streamput.sign"
_KEEP = "contact-exports.streamput.keep-send-error"


def _announce_framing(params: dict[str, Any], **_: Any) -> None:
    """botocore ``before-call``: a ChunkedBody carries its own checksum, so botocore must not
    add one (it would read the stream to compute it); the request announces the trailer."""
    body = params.get("body")
    if isinstance(body, ChunkedBody):
        params["context"].pop("checksum", None)
        params["headers"]["X-Amz-Decoded-Content-Length"] = str(body.size)
        params["headers"]["X-Amz-Trailer"] = body.checksum.header
        params["headers"]["x-amz-sdk-checksum-algorithm"] = body.checksum.name  # as botocore's


def _keep_send_error(
    request_dict: dict[str, Any], caught_exception: BaseException | None = None, **_: Any
) -> None:
    """botocore ``needs-retry``: note on the body why its send failed, before botocore's own
    handler decides on a retry it cannot make. Returns None, so it decides nothing."""
    body = request_dict.get("body")
    if isinstance(body, ChunkedBody) and caught_exception is not None:
        body.send_error = caught_exception


def _sign_as_trailer(request: Any, **_: Any) -> None:
    """botocore ``before-sign``: botocore's SigV4 signer names the payload
    STREAMING-UNSIGNED-PAYLOAD-TRAILER when the context says the checksum is in a trailer."""
    body = request.body
    if isinstance(body, ChunkedBody):
        request.context["checksum"] = {
            "request_algorithm": {
                "in": "trailer",
                "algorithm": body.checksum.algorithm,
                "name": body.checksum.header,
            }
        }
