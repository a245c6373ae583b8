"""Streaming the results link into S3 for one job, leaving nothing behind on failure.

The writer aborts its own upload on any error; an upload that a killed process could not abort
is swept by the next attempt, so no open multipart upload outlives a job. Upload ids are recorded
in the job as soon as S3 gives them, and the sweep also aborts any upload open at the job's own
key since the job began: a process killed between S3 creating an upload and Redis recording it
(or a Redis restart that lost the record) leaves an upload no record names.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError
from kombu.exceptions import KombuError

from contact_exports_client.signing import sealer
from workers import metrics
from workers.constant_contact.client import ConstantContactClient, epoch_seconds
from workers.constant_contact.results import ResultsBody
from workers.csvmerge import without_header
from workers.exceptions import (
    ExportCancelled,
    LeaseHeld,
    StorageError,
    StreamRefused,
    TransientError,
)
from workers.export.formats import CSV, FORMATS, Converted, Format
from workers.export.job import Job
from workers.export.manifest import manifest_key, write_manifest
from workers.export.notify import enqueue_notification
from workers.export.outcome import Again, Finished
from workers.export.progress import report, result_of
from workers.export.retries import check_cancelled, check_live, come_back
from workers.export.seal import ask_for_seal, seal_owed
from workers.export.tasknames import Stage
from workers.retry import BUSY_COUNTDOWN
from workers.s3.objectmeta import (
    JOB_ID,
    SHA256,
    EncodingCheck,
    export_head,
    identity,
    metadata_of,
    seal,
    sealed_export,
)
from workers.s3.objectoptions import ObjectOptions
from workers.s3.storage import MultipartWriter, StoredObject
from workers.s3.streamput import ChunkedBody, put_stream, single_put_allowed
from workers.services import Services
from workers.state.jobs import JobStore
from workers.state.leases import Lease
from workers.transfer import PROGRESS_EVERY, Progress, TransferSummary, copy_measured

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from workers.settings import Settings

log = logging.getLogger(__name__)

#: Bytes asked of the socket per read while streaming the CSV.
DOWNLOAD_CHUNK = 1024 * 1024


#: Allowance, in seconds, for the S3 server's clock against the worker's when matching uploads
#: to a job.
CLOCK_MARGIN_SECONDS = 300.0


def download_step(services: Services, job: Job) -> Finished | Again:
    """Stream the CSV into S3; the object appears only once the whole body arrived intact."""
    store = services.jobs
    done = store.result(job.job_id)
    if done is not None:
        return Finished(done)
    check_live(services, job)
    settings = services.settings
    lease = store.lease(job.job_id, "download", ttl=settings.lease_ttl_seconds)
    try:
        lease.acquire()
    except LeaseHeld as held:
        # Another delivery is streaming this job right now (or died less than a TTL ago).
        return Again(max(held.ttl, BUSY_COUNTDOWN))
    try:
        done = store.result(job.job_id)
        if done is not None:
            return Finished(done)
        check_cancelled(services, job.job_id)
        store.count_attempt(job.job_id, "download")
        swept = sweep_uploads(store, services.s3, job)
        log.info("job %s: downloading (swept %d stale uploads)", job.job_id, swept)
        report(services.results, job, Stage.DOWNLOADING, 100)
        kept = stored_before(services.s3, store, job)
        if kept is None:
            summary, stored = stream_to_s3(
                job,
                client=services.api(job.account),
                s3=services.s3,
                store=store,
                settings=settings,
                lease=lease,
                on_progress=lambda size: _progress(services, job, lease, size),
                encoding=services.encoding,
            )
            store.keep_stored(job.job_id, {"summary": asdict(summary), "object": asdict(stored)})
        else:
            summary, stored = kept
            log.info("job %s: %s is stored already; not downloaded again", job.job_id, stored.uri)
        result = result_of(job, summary, stored)
        # The completion marker, once the object is whole; then the result.
        written = write_manifest(services.s3, job, result, summary, checksum=settings.checksum)
        result["manifest"] = f"s3://{stored.bucket}/{written}"
        owed = seal_owed(job, summary, stored)
        # Sealed where messages are signed: the janitor may ask for an owed seal again.
        sign = sealer(settings.message_signing)
        if not store.save_result(job.job_id, result, seal=owed, sign=sign):
            # Cancelled after the object landed and before the job could complete: the cancel
            # won, so the object and its manifest go (nothing is stored for a cancelled job).
            remove_stored(services.s3, job)
            raise ExportCancelled(f"job {job.job_id} was cancelled")
    except (TransientError, StorageError) as error:
        if isinstance(error, StorageError) and error.permanent:
            raise
        # S3 down or overloaded past boto3's own retries: the download starts over later.
        return come_back(services, job, error, Stage.DOWNLOADING, cap=settings.retry_max_seconds)
    finally:
        lease.release()
    if owed is not None:
        ask_for_seal(services.sender, job.job_id, owed)
    metrics.EXPORTS_COMPLETED.inc()
    metrics.BYTES_STREAMED.inc(summary.size)
    try:
        enqueue_notification(
            services.sender,
            job.notify_url,
            {"status": "SUCCESS", "job_id": job.job_id, "result": result},
        )
    except KombuError as error:
        # The export is stored and its result recorded: a broker that cannot take the webhook's
        # message now must not turn it into a failure.
        log.error("job %s: completion webhook not sent: %s", job.job_id, error)
    log.info(
        "job %s: stored %s (%d bytes, %d rows)", job.job_id, stored.uri, summary.size, summary.rows
    )
    return Finished(result)


def stored_before(
    s3: S3Client, store: JobStore, job: Job
) -> tuple[TransferSummary, StoredObject] | None:
    """The object an earlier attempt of this job stored, if it is still there as it was: the
    attempt failed after storing it (its manifest could not be written, say), and downloading
    the export again would only write the same object.

    "As it was": the size recorded, this job's identity (its id and activities) in its metadata
    and, once sealed, the sha256 recorded. Only this job's attempts write that identity, one at
    a time (the download lease), each the same bytes of the same activities, and an attempt that
    fails mid-upload leaves no object; so such an object is what the record describes. Its ETag
    is no help: rclone answers a completed upload with one ETag and a later HEAD with another
    (the file's MD5). Anything else (gone, replaced, unreadable) is downloaded again.
    """
    kept = store.kept_stored(job.job_id)
    if kept is None:
        return None
    try:
        summary, stored = TransferSummary(**kept["summary"]), StoredObject(**kept["object"])
    except (TypeError, KeyError):
        return None  # kept by a worker of another version: download again
    found = export_head(s3, stored.bucket, stored.key, identity(job.job_id, job.activity_ids))
    if found is None:
        return None
    head, metadata = found
    if head["ContentLength"] != stored.size:
        return None
    if metadata.get(SHA256, summary.sha256) != summary.sha256:
        return None  # sealed since, with other figures
    return summary, stored


def sweep_uploads(store: JobStore, s3: S3Client, job: Job) -> int:
    """Abort uploads left open by earlier attempts of this job; returns how many.

    Runs under the job's download lease (or once the job has failed), so no live attempt of this
    job owns an upload at its key. The key is the job's own: two jobs writing one key at once
    would overwrite each other anyway.
    """
    recorded = store.uploads(job.job_id)
    swept = 0
    for upload_id in sorted({*recorded, *unrecorded_uploads(s3, job)}):
        with contextlib.suppress(ClientError, BotoCoreError):
            s3.abort_multipart_upload(Bucket=job.bucket, Key=job.key, UploadId=upload_id)
            swept += 1
        if upload_id in recorded:
            store.drop_upload(job.job_id, upload_id)
    return swept


def unrecorded_uploads(s3: S3Client, job: Job) -> list[str]:
    """Ids of the uploads open at exactly the job's key that began after the job did."""
    started = epoch_seconds(job.started_at)
    since = (started[0] if started else 0.0) - CLOCK_MARGIN_SECONDS
    try:
        listed = s3.list_multipart_uploads(Bucket=job.bucket, Prefix=job.key)
    except (ClientError, BotoCoreError):
        return []  # rclone answers NoSuchUpload when the bucket never had one; none to sweep
    return [
        upload["UploadId"]
        for upload in listed.get("Uploads", [])
        if upload.get("Key") == job.key
        and ("Initiated" not in upload or upload["Initiated"].timestamp() >= since)
    ]


def later_shards(client: ConstantContactClient, job: Job) -> Iterator[bytes | bytearray]:
    """The bytes of activities 2..n in request order, each without its header.

    Each results link is opened only when the one before it is exhausted (and proven whole),
    so one connection is open at a time.
    """
    for activity in job.activities[1:]:
        body: ResultsBody
        assert activity.results_href is not None  # polled to completion
        with client.open_results(activity.results_href) as body:
            yield from without_header(body.chunks(DOWNLOAD_CHUNK))


def stream_to_s3(
    job: Job,
    *,
    client: ConstantContactClient,
    s3: S3Client,
    store: JobStore,
    settings: Settings,
    lease: Lease,
    on_progress: Callable[[int], None],
    encoding: EncodingCheck | None = None,
) -> tuple[TransferSummary, StoredObject]:
    """The job's CSV stored at its key: its figures and the object. ``encoding`` is what the
    process knows of its store (``Services.encoding``); without it the store is asked anew."""
    encoding = encoding or EncodingCheck()
    metadata = identity(job.job_id, job.activity_ids)
    options = ObjectOptions.from_json(job.object_options)
    # A converted object's columns are not read back from it: it is streamed again instead.
    adopted = sealed_export(s3, job.bucket, job.key, metadata) if job.format == "csv" else None
    if adopted is not None:
        # An earlier attempt stored and sealed this export, then died before recording it.
        return adopted
    first: ResultsBody
    # The first GET happens before the upload is created, so a refused link leaves nothing.
    first_href = job.activities[0].results_href
    assert first_href is not None  # polled to completion
    fmt = FORMATS[job.format]
    with client.open_results(first_href) as first:
        started = time.monotonic()  # after the GET's turn under the rate limit, and its answer
        streamable = (
            fmt is CSV  # a converted object's size is known only at its end
            and len(job.activities) == 1
            and single_put_allowed(settings, first.expected_size)
            and encoding.keeps is not True  # such a store takes parts, which need no early seal
            and encoding.refused is None
        )
        # Whether an earlier attempt's streaming PUT was refused: asked only where it matters.
        refused_before = store.in_parts(job.job_id) if streamable else None
        in_one = streamable and refused_before is None
        log.info(
            "job %s: results answered (%s bytes); storing them %s",
            job.job_id,
            "unannounced" if first.expected_size is None else first.expected_size,
            "in one PUT" if in_one else "in parts",
        )
        put: InOne | str | None = None
        if in_one:
            put = _put_in_one(
                job,
                first,
                s3=s3,
                store=store,
                settings=settings,
                lease=lease,
                metadata=metadata,
                on_progress=on_progress,
                options=options,
                encoding=encoding,
            )
        if isinstance(put, InOne):
            summary, stored, keeps_chunked = put
        else:
            keeps_chunked = False
            summary, stored = _upload_in_parts(
                job,
                first,
                client=client,
                s3=s3,
                store=store,
                settings=settings,
                lease=lease,
                metadata=metadata,
                on_progress=on_progress,
                fmt=fmt,
                options=options,
            )
            refusal = put or refused_before
            if refusal is not None and encoding.refused is None:
                # Parts of the same export went where its streaming PUT did not: the refusal was
                # the PUT's form, not the job's options, and holds for the store.
                encoding.refuse(refusal)
                log.warning(
                    "job %s: %s; this process sends the store parts from now on"
                    " (S3_SINGLE_PUT_MAX_MIB=0 skips the try)",
                    job.job_id,
                    refusal,
                )
    stream_seconds = time.monotonic() - started
    if keeps_chunked:
        stored = _seal_now(s3, stored, metadata, summary, options)
    # Otherwise the seal comes after, as a task of its own (workers.export.seal), timed there.
    log.info(
        "job %s: streamed %d bytes in %.2f s",
        job.job_id,
        summary.size,
        stream_seconds,
        extra={"stream_seconds": round(stream_seconds, 4), "parts": stored.parts},
    )
    return summary, stored


class InOne(NamedTuple):
    """An export stored by one streaming PUT."""

    summary: TransferSummary
    stored: StoredObject
    #: Whether the store kept aws-chunked on it: it is then sealed before the result.
    keeps_chunked: bool


def _put_in_one(
    job: Job,
    first: ResultsBody,
    *,
    s3: S3Client,
    store: JobStore,
    settings: Settings,
    lease: Lease,
    metadata: dict[str, str],
    on_progress: Callable[[int], None],
    options: ObjectOptions,
    encoding: EncodingCheck,
) -> InOne | str:
    """The export in one streaming PUT; or, if the store refused the PUT before a byte of
    ``first`` was read, why, so that the caller sends the same answer in parts.

    Refused once the results were being read, or stored as other than the content (a store
    that decodes no aws-chunked keeps its framing), the download starts over, and the job's
    record says to send parts (``JobStore.store_in_parts``), whichever process retries it. A
    wrong object is deleted first: no manifest or result names it yet. It also proves at once
    that the store takes no streaming PUT; a refusal, which the job's own object options may
    also draw, is believed for the store once parts of the same export have gone.
    """
    assert first.expected_size is not None
    body = ChunkedBody(
        first,
        first.expected_size,
        checksum=settings.checksum,
        on_progress=on_progress,
        before_end=lambda: _check_lease(lease),  # before the object can appear
    )
    stored: StoredObject | None = None
    try:
        summary, stored = put_stream(
            s3, job.bucket, job.key, body, metadata=metadata, extra=options.write_args()
        )
        return InOne(summary, stored, encoding.keeps_chunked(s3, stored))
    except StreamRefused as refused:
        reason = str(refused)
        if stored is None and body.measurement.size == 0:
            return reason
        store.store_in_parts(job.job_id, reason)  # whoever retries the job, even without lease
        if stored is not None:
            encoding.refuse(reason)
            log.warning(
                "job %s: %s; this process sends the store parts from now on", job.job_id, reason
            )
            _check_lease(lease)  # the key is another attempt's once the lease is lost
            with contextlib.suppress(ClientError, BotoCoreError):  # else the retry overwrites it
                s3.delete_object(Bucket=job.bucket, Key=job.key)
        raise TransientError(f"{reason}; the download starts over, in parts") from refused


def copy_converted(
    converted: Converted, writer: MultipartWriter, on_progress: Callable[[int], None]
) -> TransferSummary:
    """Upload a converted object as it comes, measured: size and sha256 of what is stored, rows
    and columns as the conversion read them."""
    digest = hashlib.sha256()
    size = 0
    progress = Progress(on_progress, PROGRESS_EVERY)
    for chunk in converted:
        digest.update(chunk)
        writer.write(chunk)
        size += len(chunk)
        progress(size)
    columns = converted.columns
    return TransferSummary(
        size,
        digest.hexdigest(),
        converted.rows,
        [c.name for c in columns],
        headers=[c.header for c in columns],
        types=[c.type for c in columns],
    )


def _seal_now(
    s3: S3Client,
    stored: StoredObject,
    metadata: dict[str, str],
    summary: TransferSummary,
    options: ObjectOptions,
) -> StoredObject:
    """Seal before the result is published, on a store that kept ``aws-chunked`` as the
    object's Content-Encoding: the seal's copy drops it, and no reader of the result sees it."""
    started = time.monotonic()
    try:
        seal(s3, stored, metadata, summary, extra=options.copy_args())
    except StorageError as error:
        log.warning("%s: not sealed before the result (%s); the seal task will", stored.uri, error)
        return stored
    seconds = time.monotonic() - started
    log.info("%s: sealed before the result in %.2f s", stored.uri, seconds)
    return replace(stored, sealed=True)


def _progress(services: Services, job: Job, lease: Lease, size: int) -> None:
    """Every PROGRESS_EVERY bytes: a lease lost (to a cancel, or to another delivery) stops the
    transfer here rather than at its end; else the caller hears how far it got."""
    _check_lease(lease)
    check_cancelled(services, job.job_id)  # before a report that would hide the cancel's FAILURE
    report(services.results, job, Stage.DOWNLOADING, 100, size)


def remove_stored(s3: S3Client, job: Job) -> bool:
    """Delete the job's manifest and object if this job wrote them (its id in the object's
    metadata): a job that is cancelled, or fails after storing, keeps neither. False when S3
    could not be asked or would not delete (logged); the object then stays."""
    try:
        head = s3.head_object(Bucket=job.bucket, Key=job.key)
    except ClientError:
        return True  # nothing there
    except BotoCoreError as error:
        log.error("job %s: s3://%s/%s may stay: %s", job.job_id, job.bucket, job.key, error)
        return False
    if metadata_of(head).get(JOB_ID) != job.job_id:
        return True  # not this job's
    for key in (manifest_key(job.key), job.key):  # the marker first: no reader trusts the rest
        try:
            s3.delete_object(Bucket=job.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            log.error("job %s: s3://%s/%s stays: %s", job.job_id, job.bucket, key, error)
            return False
    log.info("job %s: its object and manifest are deleted", job.job_id)
    return True


def _check_lease(lease: Lease) -> None:
    if lease.lost.is_set():
        # Another delivery took over while we stalled; let it finish the job.
        raise TransientError("download lease lost; leaving the job to its new holder")


def _upload_in_parts(
    job: Job,
    first: ResultsBody,
    *,
    client: ConstantContactClient,
    s3: S3Client,
    store: JobStore,
    settings: Settings,
    lease: Lease,
    metadata: dict[str, str],
    on_progress: Callable[[int], None],
    fmt: Format,
    options: ObjectOptions,
) -> tuple[TransferSummary, StoredObject]:
    writer = MultipartWriter(
        s3,
        job.bucket,
        job.key,
        part_size=settings.part_size,
        parts_in_flight=settings.s3_parts_in_flight,
        metadata=metadata,
        content_type=fmt.content_type,
        extra=options.write_args(),
        checksum=settings.checksum,
    )
    with writer:
        assert writer.upload_id is not None
        store.add_upload(job.job_id, writer.upload_id)
        chunks = itertools.chain(first.chunks(DOWNLOAD_CHUNK), later_shards(client, job))
        if fmt is not CSV:
            summary = copy_converted(Converted(fmt, chunks), writer, on_progress)
        else:
            # One activity: read straight into the part buffers.
            source: ResultsBody | Iterator[bytes | bytearray] = (
                chunks if len(job.activities) > 1 else first
            )
            summary = copy_measured(source, writer, on_progress=on_progress)
        _check_lease(lease)
        stored = writer.complete()
    # Only a completed upload is forgotten here; an aborted one is swept again next time.
    store.drop_upload(job.job_id, writer.upload_id)
    return summary, stored
