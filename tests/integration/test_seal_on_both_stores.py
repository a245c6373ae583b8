"""Sealing an export's object with its measured figures, and recognising a sealed one, on a real
S3 server: rclone and SeaweedFS (``both_stores``)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

from tests.integration.conftest import BUCKET
from workers.s3.checksums import DEFAULT
from workers.s3.objectmeta import identity, seal, sealed_export
from workers.s3.storage import MIN_PART_SIZE, MultipartWriter
from workers.transfer import copy_measured

pytestmark = [pytest.mark.integration, pytest.mark.both_stores]

CSV = b'Email,"First, name"\n' + b"".join(b"a%d@x.org,A%d\n" % (i, i) for i in range(400_000))


def stored_export(s3: Any, job_id: str, data: bytes = CSV) -> tuple[Any, Any, dict[str, str]]:
    """Upload ``data`` as a job's export the way the download step does, in several parts."""
    key = f"objectmeta/{job_id}.csv"
    metadata = identity(job_id, ["act-1", "act-2"])
    with MultipartWriter(
        s3,
        BUCKET,
        key,
        part_size=MIN_PART_SIZE,
        parts_in_flight=2,
        metadata=metadata,
        checksum=DEFAULT,
    ) as writer:
        summary = copy_measured([data[i : i + 65536] for i in range(0, len(data), 65536)], writer)
        stored = writer.complete()
    return summary, stored, metadata


def test_sealing_adds_the_measured_figures_and_keeps_the_bytes(s3: Any) -> None:
    summary, stored, metadata = stored_export(s3, str(uuid.uuid4()))
    assert stored.parts > 1
    seal(s3, stored, metadata, summary)
    head = s3.head_object(Bucket=BUCKET, Key=stored.key)
    sealed = {name.lower(): value for name, value in head["Metadata"].items()}
    assert sealed == {
        "job-id": metadata["job-id"],
        "activity-id": "act-1,act-2",
        "sha256": hashlib.sha256(CSV).hexdigest(),
        "rows": "400000",
        "bytes": str(len(CSV)),
    }
    assert head["ContentType"] == "text/csv"
    body = s3.get_object(Bucket=BUCKET, Key=stored.key)["Body"].read()
    assert body == CSV


def test_a_sealed_export_is_recognised_with_its_figures_and_header(s3: Any) -> None:
    summary, stored, metadata = stored_export(s3, str(uuid.uuid4()))
    assert sealed_export(s3, BUCKET, stored.key, metadata) is None  # not sealed yet
    seal(s3, stored, metadata, summary)
    found = sealed_export(s3, BUCKET, stored.key, metadata)
    assert found is not None
    figures, where = found
    assert figures == summary
    assert figures.columns == ["Email", "First, name"]
    assert (where.bucket, where.key, where.size) == (BUCKET, stored.key, len(CSV))


@pytest.mark.parametrize(
    "other",
    [
        {"job-id": "another-job"},
        {"activity-id": "act-1"},
    ],
)
def test_a_sealed_object_of_another_export_is_not_adopted(s3: Any, other: dict[str, str]) -> None:
    summary, stored, metadata = stored_export(s3, str(uuid.uuid4()))
    seal(s3, stored, metadata, summary)
    assert sealed_export(s3, BUCKET, stored.key, {**metadata, **other}) is None


def test_an_object_whose_size_disagrees_with_its_seal_is_not_adopted(s3: Any) -> None:
    summary, stored, metadata = stored_export(s3, str(uuid.uuid4()))
    seal(s3, stored, metadata, summary)
    # Someone overwrote the bytes but carried the old metadata along.
    s3.put_object(
        Bucket=BUCKET,
        Key=stored.key,
        Body=CSV[:1000],
        Metadata={**metadata, "sha256": summary.sha256, "rows": "1", "bytes": str(len(CSV))},
    )
    assert sealed_export(s3, BUCKET, stored.key, metadata) is None


def test_an_absent_object_is_not_adopted(s3: Any) -> None:
    assert sealed_export(s3, BUCKET, f"objectmeta/{uuid.uuid4()}.csv", identity("j", ["a"])) is None


def test_an_empty_export_is_sealed_and_recognised(s3: Any) -> None:
    summary, stored, metadata = stored_export(s3, str(uuid.uuid4()), data=b"")
    seal(s3, stored, metadata, summary)
    found = sealed_export(s3, BUCKET, stored.key, metadata)
    assert found is not None
    assert (found[0].size, found[0].rows, found[0].columns) == (0, 0, [])
