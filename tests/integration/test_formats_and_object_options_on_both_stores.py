"""Formats and object options on each real S3 server (rclone and SeaweedFS), through the
export's steps in this process (``tests.integration.chain``) with the sandbox and Redis: every
format read back with its own reader and checked against Constant Contact's CSV row by row,
and the object options as each store keeps them. Over https the same uploads are proven by
test_exports_with_real_services.py.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq
import pytest
import zstandard

from sandbox.testing import SandboxProcess
from tests.integration.chain import run_export
from tests.integration.conftest import BUCKET, ServicesFactory, Store
from tests.integration.helpers import metadata_of, wait_until
from workers.exceptions import InvalidExportRequest, StorageError
from workers.export.formats import FORMATS
from workers.export.manifest import manifest_key
from workers.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.both_stores("rclone", "seaweedfs")]


@pytest.mark.parametrize("single_put_max_mib", [128, 0], ids=["one PUT", "in parts"])
def test_object_options_reach_every_write_of_the_export(
    make_services: ServicesFactory, s3_store: Store, single_put_max_mib: int
) -> None:
    """Tags and the storage class as each store keeps them (SeaweedFS keeps both, rclone the
    storage class), on the object and its manifest, through the seal's copy; and the exact
    headers of a KMS-encrypted upload, which neither store here takes."""
    services = make_services(s3_single_put_max_mib=single_put_max_mib, s3_tags="team=crm")
    tagged = {"storage_class": "STANDARD_IA", "tags": {"dataset": "contacts", "pii": "yes"}}
    summary = run_export(services, {"export": {}, "destination": tagged})
    s3 = s3_store.client
    wait_until(lambda: "sha256" in metadata_of(s3, summary), what="the seal")  # its copy too
    for key in (summary["key"], manifest_key(summary["key"])):
        assert s3.head_object(Bucket=BUCKET, Key=key).get("StorageClass") == "STANDARD_IA"
        if s3_store.name.startswith("seaweedfs"):
            tags = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
            assert {t["Key"]: t["Value"] for t in tags} == {
                "team": "crm",
                "dataset": "contacts",
                "pii": "yes",
            }

    # KMS, by the request itself: it is stopped before it leaves (no store here has a KMS).
    sent: list[dict[str, str]] = []

    def stop(request: Any, **_: Any) -> None:
        sent.append({k.lower(): _text(v) for k, v in request.headers.items()})
        raise UnsentError

    events = [f"before-send.s3.{op}" for op in ("PutObject", "CreateMultipartUpload")]
    for event in events:
        services.s3.meta.events.register(event, stop)
    kms = {"sse": "aws:kms", "kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/k1"}
    try:
        with pytest.raises(StorageError):
            run_export(services, {"export": {}, "destination": kms})
    finally:  # the client is the module's
        for event in events:
            services.s3.meta.events.unregister(event, stop)
    assert sent[0]["x-amz-server-side-encryption"] == "aws:kms"
    assert sent[0]["x-amz-server-side-encryption-aws-kms-key-id"] == kms["kms_key_id"]
    assert sent[0]["x-amz-tagging"] == "team=crm"


class UnsentError(Exception):
    """Raised by a test's hook to keep a request from being sent."""


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_object_options_that_break_s3s_rules_are_refused_before_any_api_call(
    services: Services, sandbox: SandboxProcess
) -> None:
    before = len(sandbox.requests())
    eleven = {f"t{n}": "v" for n in range(11)}
    for destination, message in (
        ({"tags": eleven}, "at most 10"),
        ({"storage_class": "GLACIER"}, "cannot be sealed"),
        ({"kms_key_id": "k"}, "needs sse 'aws:kms'"),
        ({"tags": {"aws:owner": "x"}}, "the aws: prefix"),
        ({"tags": {"bad": "a;b"}}, "only letters, digits"),
    ):
        with pytest.raises(InvalidExportRequest, match=message):
            run_export(services, {"export": {}, "destination": destination})
    assert len(sandbox.requests()) == before


def stored_rows(data: bytes, fmt: str) -> list[dict[str, Any]]:
    """Each row of a stored object as its format's own reader gives it."""
    if fmt == "parquet":
        return list(pq.read_table(io.BytesIO(data)).to_pylist())
    if fmt == "csv.zst":
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    else:
        data = gzip.decompress(data)
    if fmt == "jsonl.gz":
        return [json.loads(line) for line in data.decode().splitlines()]
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


@pytest.mark.parametrize("fmt", ["csv.gz", "csv.zst", "jsonl.gz", "parquet"])
def test_each_format_holds_the_csv_row_by_row(
    services: Services,
    sandbox: SandboxProcess,
    s3_store: Store,
    object_bytes: Callable[[str, str], bytes],
    fmt: str,
) -> None:
    """The same export as Constant Contact's CSV and in ``fmt``: every row, every column under
    its field name, text where the format is text and the value's own type where it is typed."""
    export = {"list_ids": sandbox.catalog()["lists"][:1]}
    plain = run_export(services, {"export": export})
    source = list(
        csv.DictReader(io.StringIO(object_bytes(BUCKET, plain["key"]).decode("utf-8-sig")))
    )
    summary = run_export(
        services,
        {"export": export, "format": fmt, "destination": {"key": "formats/{job_id}.{ext}"}},
    )
    assert summary["key"] == f"formats/{summary['job_id']}.{fmt}"
    data = object_bytes(BUCKET, summary["key"])
    assert hashlib.sha256(data).hexdigest() == summary["sha256"] and len(data) == summary["bytes"]
    rows = stored_rows(data, fmt)
    assert len(rows) == len(source) == summary["rows"] > 0
    columns = {
        c["header"]: c
        for c in json.loads(object_bytes(BUCKET, summary["key"] + ".manifest.json"))["columns"]
    }
    assert list(columns) == list(source[0]) and summary["columns"] == [
        c["name"] for c in columns.values()
    ]
    head = s3_store.client.head_object(Bucket=BUCKET, Key=summary["key"])
    assert head["ContentType"] == {
        "parquet": "application/vnd.apache.parquet",
        "csv.zst": "application/zstd",
    }.get(fmt, "application/gzip")
    for want, got in zip(source, rows, strict=True):
        for header, text in want.items():
            column = columns[header]
            value = got[column["name"]]
            if fmt.startswith("csv"):
                assert value == text
            elif text == "":
                assert value is None
            elif column["type"] == "string":
                assert value == text
            elif column["type"] == "boolean":
                assert value is (text == "true")
            elif column["type"] == "integer":
                assert value == int(text)
            elif column["type"] == "date":
                assert str(value) == text
            else:  # a timestamp: the same instant, in UTC
                assert _instant(value) == _instant(text), (header, text, value)


def _instant(value: Any) -> datetime:
    """A timestamp as Constant Contact writes it (the guide's two styles), as JSON gives it
    (ISO 8601, Z) or as Parquet does (an aware datetime)."""
    if isinstance(value, datetime):
        return value
    for pattern in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S.%f %z"):
        try:
            return datetime.strptime(value, pattern)
        except ValueError:
            continue
    return datetime.fromisoformat(value)


def test_a_format_whose_library_is_missing_is_refused_before_any_api_call(
    services: Services, sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker installed without the formats extra (pyarrow) says so, and calls nothing."""
    without = dataclasses.replace(FORMATS["parquet"], modules=("pyarrow_not_installed",))
    monkeypatch.setitem(FORMATS, "parquet", without)
    before = len(sandbox.requests())
    with pytest.raises(InvalidExportRequest, match="needs pyarrow_not_installed"):
        run_export(services, {"export": {}, "format": "parquet"})
    assert len(sandbox.requests()) == before
