"""What an export's S3 object says about itself, so a finished object is never streamed twice.

The object's metadata names its job and activities from the start, and — once the whole stream
has been measured — its sha256, bytes and rows. S3 fixes metadata when an upload is created,
before a single byte is known, so the measured figures are added after completion by copying
the object onto itself with new metadata ("sealing"). MinIO treats that as a metadata-only
update; AWS copies server-side (no byte passes through the worker, but a multi-GiB object takes
seconds to minutes); ``rclone serve s3`` first computes the MD5 of the whole file, which it does
on any new file's first stat. That is why the seal is a task of its own
(``workers.export.seal``), run after the result is recorded rather than before the caller may
see it.

A sealed object whose job, activities and size match is the finished export: a repeated
download (after a Redis restart lost the result the seal came after) adopts it instead of
streaming the file again. An unsealed one is rewritten with identical bytes, unless the job
record says an attempt stored it (``download.stored_before``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from workers.csvstats import MAX_HEADER_BYTES, CsvStats
from workers.exceptions import ObjectChanged, StreamRefused
from workers.s3.storage import StoredObject, answer_of, forbidden, storage_error
from workers.transfer import TransferSummary

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: S3 copies an object of up to 5 GiB in one request; larger ones are copied part by part.
SINGLE_COPY_LIMIT = 5 * 1024**3
#: Part size of a multipart copy (only for objects over SINGLE_COPY_LIMIT).
COPY_PART_SIZE = 512 * 1024**2
#: S3 limits all user metadata of an object to 2 KiB; the activity list is cut to fit.
MAX_ACTIVITY_IDS = 1024

#: What S3 answers a seal when the object it names is gone (404) or was replaced (412).
CHANGED_CODES = frozenset({"PreconditionFailed", "412", "NoSuchKey", "404"})

JOB_ID = "job-id"
ACTIVITY_ID = "activity-id"
SHA256 = "sha256"
ROWS = "rows"
BYTES = "bytes"


def identity(job_id: str, activity_ids: list[str]) -> dict[str, str]:
    """The metadata an export's upload starts with: which job and activities it holds."""
    return {JOB_ID: job_id, ACTIVITY_ID: ",".join(activity_ids)[:MAX_ACTIVITY_IDS]}


def seal(
    s3: S3Client,
    stored: StoredObject,
    identity_metadata: dict[str, str],
    summary: TransferSummary,
    *,
    content_type: str = "text/csv",
    extra: dict[str, Any] | None = None,
) -> None:
    """Add the measured sha256, bytes and rows to the object's metadata; ``extra`` are the
    copy's arguments that keep the object's encryption, storage class and tags
    (``ObjectOptions.copy_args``).

    A failure here is a StorageError, which the seal task retries by the one retry policy
    (``permanent`` for an answer no retry changes); until sealed, a repeated
    download rewrites the object rather than trusting it, unless the job record says an attempt
    stored it (``download.stored_before``).
    """
    if_match = {"CopySourceIfMatch": stored.etag} if stored.etag else {}
    metadata = {
        **identity_metadata,
        SHA256: summary.sha256,
        ROWS: str(summary.rows),
        BYTES: str(summary.size),
    }
    try:
        s3.copy(
            CopySource={"Bucket": stored.bucket, "Key": stored.key},
            Bucket=stored.bucket,
            Key=stored.key,
            ExtraArgs={
                "MetadataDirective": "REPLACE",
                "Metadata": metadata,
                "ContentType": content_type,
                **if_match,
                **(extra or {}),
            },
            Config=TransferConfig(
                multipart_threshold=SINGLE_COPY_LIMIT,
                multipart_chunksize=COPY_PART_SIZE,
                use_threads=False,
            ),
        )
    except ClientError as error:
        _, code = answer_of(error)
        if code in CHANGED_CODES:
            raise ObjectChanged(f"{stored.uri} changed before it was sealed: {code}") from error
        raise storage_error(f"S3 copy (sealing) failed for {stored.uri}", error) from error
    except BotoCoreError as error:
        raise storage_error(f"S3 copy (sealing) failed for {stored.uri}", error) from error


class EncodingCheck:
    """How the store takes one streaming PUT (``workers.s3.streamput``), as this process learnt.

    Whether it keeps ``Content-Encoding: aws-chunked`` on the object: AWS S3 and MinIO drop it,
    as the protocol says; ``rclone serve s3`` and SeaweedFS keep it, so a reader would be told
    of an encoding no HTTP client knows until the seal's copy drops it. Learnt from the first
    such object a process writes (one HEAD), then remembered, so a store that behaves costs one
    request per process, not per export. That first object is sealed before its result is
    published; on such a store later exports go in parts, whose object carries no such header,
    and whose seal can come after the result again.

    Whether it takes the request at all (``refused``): some S3-compatible stores refuse it
    (StreamRefused, from ``put_stream``), and some that know no aws-chunked store its framing
    as the content (s3rver 3.7.1 kept 1,200,060 bytes of a 1,200,004-byte CSV). The same HEAD
    compares the stored size with the content's. Either way this process sends the store parts
    from then on.
    """

    def __init__(self) -> None:
        self.keeps: bool | None = None
        #: Why this process sends its store no more streaming PUTs; None while it takes them.
        self.refused: str | None = None

    def refuse(self, reason: str) -> None:
        self.refused = reason

    def keeps_chunked(self, s3: S3Client, stored: StoredObject) -> bool:
        """Whether the store kept aws-chunked on ``stored``, just written by a streaming PUT.

        Until a HEAD has answered, the object is unchecked and must not be published: a HEAD
        that fails is a StorageError (the download is retried), and one that is forbidden (no
        ``s3:GetObject``, which parts do not need) or finds another size than the content's (a
        store that decodes no aws-chunked keeps the framing) is StreamRefused.
        """
        if self.keeps is None:
            try:
                head = s3.head_object(Bucket=stored.bucket, Key=stored.key)
            except (ClientError, BotoCoreError) as error:
                if forbidden(error):
                    raise StreamRefused(
                        f"{stored.uri}: what the store kept of a streaming PUT cannot be read"
                        f" back to check it ({error})"
                    ) from error
                failed = f"{stored.uri}: what the store kept of its streaming PUT cannot be checked"
                raise storage_error(failed, error) from error
            kept = head.get("ContentLength")
            if kept != stored.size:
                raise StreamRefused(
                    f"{stored.uri}: the store kept {kept} bytes of a streaming PUT of"
                    f" {stored.size}: it does not decode aws-chunked"
                )
            self.keeps = "aws-chunked" in str(head.get("ContentEncoding", "")).lower()
        return self.keeps


def metadata_of(head: Any) -> dict[str, str]:
    """An object's user metadata with its names in lower case: AWS lowercases them, rclone
    capitalises them."""
    return {name.lower(): value for name, value in head.get("Metadata", {}).items()}


def export_head(
    s3: S3Client, bucket: str, key: str, identity_metadata: dict[str, str]
) -> tuple[Any, dict[str, str]] | None:
    """The HEAD of the object at ``key`` and its metadata (``metadata_of``), if it carries this
    export's identity; None if it is absent, unreadable or another's."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError):
        return None
    metadata = metadata_of(head)
    if any(metadata.get(name) != value for name, value in identity_metadata.items()):
        return None
    return head, metadata


def sealed_export(
    s3: S3Client, bucket: str, key: str, identity_metadata: dict[str, str]
) -> tuple[TransferSummary, StoredObject] | None:
    """The figures of a sealed object of this very export, or None if it must be (re)written.

    The header (the result's ``columns``) is read back with one ranged GET.
    """
    found = export_head(s3, bucket, key, identity_metadata)
    if found is None:
        return None  # absent (404), unreadable or another's: writing it again is always safe
    head, metadata = found
    try:
        size, rows, sha256 = int(metadata[BYTES]), int(metadata[ROWS]), metadata[SHA256]
    except (KeyError, ValueError):
        return None
    if head["ContentLength"] != size or len(sha256) != 64:
        return None
    columns = _header(s3, bucket, key) if size else []
    if columns is None:
        return None
    return TransferSummary(size, sha256, rows, columns), StoredObject(
        bucket, key, size, 0, sealed=True
    )


def _header(s3: S3Client, bucket: str, key: str) -> list[str] | None:
    stats = CsvStats()
    with contextlib.suppress(ClientError, BotoCoreError):
        answer: dict[str, Any] = dict(
            s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_HEADER_BYTES - 1}")
        )
        stats.feed(answer["Body"].read())
        return stats.columns
    return None
