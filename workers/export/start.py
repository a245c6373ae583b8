"""The first step: check the request, fix the job's id, key and deadline, and open its record.

Everything a request can get wrong is refused here, before any API call, as
InvalidExportRequest. A job_id seen before resumes its job: its record keeps the deadline and
result id it was first given, and a finished job answers with its result at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contact_exports_client.signing import sealer
from workers import metrics
from workers.exceptions import InvalidExportRequest
from workers.export.formats import FORMATS
from workers.export.job import Job
from workers.export.keytemplate import render_key
from workers.export.manifest import manifest_key
from workers.export.outcome import Finished, Next
from workers.export.progress import iso_utc, report
from workers.export.request import parse_job_request
from workers.export.retries import check_cancelled
from workers.export.tasknames import Stage
from workers.logconfig import bind_job
from workers.services import Services
from workers.settings import Settings
from workers.webhooks import check_url


def start_export(services: Services, kwargs: dict[str, Any], *, result_id: str) -> Next | Finished:
    """``kwargs`` are the caller's (docs/contract.md §1); ``result_id`` the id the caller holds."""
    settings = services.settings
    request = parse_job_request(kwargs)
    services.accounts.check(request.account)
    if request.notify_url:
        check_url(request.notify_url, settings.webhook_hosts, settings.webhook_secret is not None)
    missing = FORMATS[request.format].missing()
    if missing:
        raise InvalidExportRequest(
            f"format: {request.format} needs {', '.join(missing)} (the formats extra), which "
            "these workers do not have"
        )
    bucket = request.destination.bucket or settings.s3_bucket
    if not bucket:
        raise InvalidExportRequest("destination.bucket: no bucket given and S3_BUCKET is not set")
    job_id = request.job_id or result_id
    bind_job(job_id=job_id, account=request.account)
    started = datetime.fromtimestamp(services.clock(), UTC)
    key = render_key(
        request.destination.key or settings.export_key_template,
        account=request.account,
        job_id=job_id,
        started=started,
        ext=FORMATS[request.format].extension,
    )
    _check_destination(settings, bucket, key)
    options = request.destination.object_options.over(settings.object_options)
    problem = options.problem()  # each was valid; together they may be too many tags
    if problem:
        raise InvalidExportRequest(f"destination.{problem}")
    store = services.jobs
    done = store.result(job_id)
    if done is not None:
        return Finished(done)
    check_cancelled(services, job_id)  # cancelled while its message waited
    job = Job(
        job_id=job_id,
        result_id=result_id,
        account=request.account,
        requests=request.export.shards(),
        bucket=bucket,
        key=key,
        deadline=services.clock() + settings.export_deadline_seconds,
        started_at=iso_utc(started),
        unknown_fields=request.export.unknown_fields,
        notify_url=request.notify_url,
        object_options=options.to_json(),
        format=request.format,
    )
    # The message was verified: seal what is stored (where messages are signed).
    if store.open(job, {**kwargs, "job_id": job_id}, sealer(settings.message_signing)):
        metrics.EXPORTS_STARTED.inc()
    elif job.key != key:  # the key its record keeps: it must still be one we may write
        _check_destination(settings, bucket, job.key)
    report(services.results, job, Stage.CREATING)
    return Next(job)


def _check_destination(settings: Settings, bucket: str, key: str) -> None:
    """``key`` and its manifest's key are allowed (the manifest's must fit S3's 1,024 bytes
    too); InvalidExportRequest if not."""
    settings.allowed_destinations.check(bucket, key)
    settings.allowed_destinations.check(bucket, manifest_key(key))
