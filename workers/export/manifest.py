"""The manifest: ``<key>.manifest.json`` beside each stored export, written after it.

Data pipelines wait for a completion marker before they load a file (Airflow's sensors, a lake's
ingestion); the manifest is that marker. It is written only once the object is complete, and
it describes the object (bytes, rows, columns, sha256), so a reader that sees the manifest can
trust the object without asking the workers. A job that fails stores neither, and a cancelled
job's object and manifest are deleted (``download_step``). Its JSON Schema is
``schemas/export-manifest.schema.json`` (``workers.export.request.Manifest``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from workers.export.job import Job
from workers.export.request import Manifest, ManifestColumn
from workers.s3.checksums import Checksum, body_checksum
from workers.s3.objectoptions import ObjectOptions
from workers.s3.storage import storage_error
from workers.transfer import TransferSummary

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Appended to the export's key.
MANIFEST_SUFFIX = ".manifest.json"
#: The distribution this service is installed as.
DISTRIBUTION = "contact-export-worker"


def manifest_key(key: str) -> str:
    return key + MANIFEST_SUFFIX


@lru_cache(maxsize=1)
def service_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_manifest(
    job: Job, result: dict[str, Any], summary: TransferSummary | None = None
) -> dict[str, Any]:
    """The manifest of ``job``'s stored export, from its result (and, for a converted format,
    the labels and types its conversion gave the columns)."""
    names = result["columns"]
    headers = summary.headers if summary and summary.headers else names
    types = summary.types if summary and summary.types else ["string"] * len(names)
    columns = [
        ManifestColumn(name=name, header=header, type=kind)  # type: ignore[arg-type]
        for name, header, kind in zip(names, headers, types, strict=True)
    ]
    manifest = Manifest(
        job_id=job.job_id,
        account=job.account,
        request={"requests": job.requests},
        activities=job.activity_ids,
        format=job.format,  # type: ignore[arg-type]  # checked when the request was parsed
        bucket=result["bucket"],
        key=result["key"],
        bytes=result["bytes"],
        rows=result["rows"],
        columns=columns,
        sha256=result["sha256"],
        started_at=result["started_at"],
        finished_at=result["finished_at"],
        service_version=service_version(),
    )
    return manifest.model_dump()


def write_manifest(
    s3: S3Client,
    job: Job,
    result: dict[str, Any],
    summary: TransferSummary | None = None,
    *,
    checksum: Checksum,
) -> str:
    """PUT the manifest beside the object; its key. A StorageError if S3 refuses it."""
    key = manifest_key(result["key"])
    body = json.dumps(build_manifest(job, result, summary), indent=2).encode()
    try:
        s3.put_object(
            Bucket=result["bucket"],
            Key=key,
            Body=body,
            ContentType="application/json",
            **body_checksum(s3, checksum, body),  # given, so botocore sends no chunked trailer
            **ObjectOptions.from_json(job.object_options).write_args(),  # as the object
        )
    except (ClientError, BotoCoreError) as error:
        raise storage_error(f"s3://{result['bucket']}/{key}: the manifest", error) from error
    return key
