"""What a store's own process spends per GiB on each form of upload, from one file in page cache.

    .venv/bin/python -m bench.store_cost                      # SeaweedFS, 512 MiB, 2 rounds
    .venv/bin/python -m bench.store_cost --stores seaweedfs,rclone-tmpfs --rounds 3
    .venv/bin/python -m bench.store_cost --only MultipartWriter --only "put_object, app"

(``--only WORDS``, repeatable: only the forms whose name contains WORDS.)

On two cores a store that spends 20 CPU seconds a GiB leaves a client little (bench/stream.py
prints the store's CPU beside every method): what the store charges for a request's form then
sets the client's speed as much as the client's own work does. Each form here sends the same
spooled CSV (``bench/.spool``, rendered by ``python -m bench.corpus 512``) from memory, so the
client's work is small and alike; the store's CPU seconds per GiB and the machine's busy cores
are read around each upload (``bench.sampling.StoreLoad``). Forms run interleaved, round by
round. Results go to ``bench/results/store-cost.md``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import io
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench import tools
from bench.corpus import SPOOL_DIR, TOKEN
from bench.report import header, machine, worker_settings_note
from bench.sampling import StoreLoad
from bench.stores import BUCKET, STORES, RunningStore
from devstack.s3server import rclone_binary
from workers.s3.checksums import DEFAULT
from workers.s3.storage import MultipartWriter, declare_part_as_bytes, make_s3_client
from workers.s3.streamput import ChunkedBody, put_stream
from workers.settings import Settings
from workers.transfer import copy_measured

RESULTS = Path(__file__).resolve().parent / "results" / "store-cost.md"
GIB = 2**30
PART = 16 * 2**20

Upload = Callable[[RunningStore, bytes, Path, str], None]


@functools.cache
def client(store: RunningStore, *, checksums: bool, as_bytes: bool = False) -> Any:
    """One client per store and setting, made before any upload is timed (``measure``)."""
    env = store.server.env()
    s3 = boto3.client(
        "s3",
        endpoint_url=store.server.endpoint_url,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(
            request_checksum_calculation="when_supported" if checksums else "when_required",
            s3={"addressing_style": "path", "payload_signing_enabled": False},
        ),
    )
    if as_bytes:
        s3.meta.events.register("before-call.s3.UploadPart", declare_part_as_bytes)
    return s3


@functools.cache
def worker_client(store: RunningStore) -> Any:
    """The worker's own client (``make_s3_client``) for this store, at its defaults unless the
    environment sets other ``S3_*`` values."""
    env = store.server.env()
    settings = Settings(cc_access_token=TOKEN, s3_endpoint_url=store.server.endpoint_url)
    session = boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    return make_s3_client(settings, session)


def worker_parts(in_flight: int = 1, *, measured: bool = False) -> Upload:
    """The worker's MultipartWriter as an export in parts uses it: 16 MiB parts, CRC32C,
    ``in_flight`` at once (``S3_PARTS_IN_FLIGHT``), each part buffer filled and committed (which
    starts its upload) by ``MultipartWriter.write``. With ``measured``, the parts are filled by
    the worker's own loop instead (``workers.transfer.copy_measured``, a file in memory standing
    in for the socket): each is read into its buffer in place, committed, and measured where it
    lies while it uploads (sha256, size, rows: the contract's per-byte work). That shows what
    the work costs the upload on a machine whose cores the store shares, apart from any
    download."""

    def run(store: RunningStore, data: bytes, _: Path, key: str) -> None:
        with MultipartWriter(
            worker_client(store),
            BUCKET,
            key,
            part_size=PART,
            parts_in_flight=in_flight,
            checksum=DEFAULT,
        ) as writer:
            if measured:
                size = copy_measured(io.BytesIO(data), writer).size
                if size != len(data):
                    raise RuntimeError(f"measured {size} bytes of {len(data)}")
            else:
                writer.write(data)
            writer.complete()

    return run


def put(content_type: str, *, md5: bool = False) -> Upload:
    def run(store: RunningStore, data: bytes, _: Path, key: str) -> None:
        extra = {"ContentMD5": _md5(data)} if md5 else {}
        client(store, checksums=False).put_object(
            Bucket=BUCKET, Key=key, Body=data, ContentType=content_type, **extra
        )

    return run


def _md5(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def streaming_put(store: RunningStore, data: bytes, _: Path, key: str) -> None:
    body = ChunkedBody(io.BytesIO(data), len(data), checksum=DEFAULT)
    put_stream(client(store, checksums=True), BUCKET, key, body, metadata={})


def multipart(checksums: bool, *, md5: bool = False, as_bytes: bool = False) -> Upload:
    """boto3's multipart upload, its parts sent as botocore sends them (no Content-Type) or, with
    ``as_bytes``, declared application/octet-stream, as the AWS SDK for Go and this worker send
    them."""

    def run(store: RunningStore, data: bytes, _: Path, key: str) -> None:
        s3 = client(store, checksums=checksums, as_bytes=as_bytes)
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="text/csv")
        parts = []
        with memoryview(data) as view:
            for number, offset in enumerate(range(0, len(data), PART), 1):
                part = bytes(view[offset : offset + PART])
                answer = s3.upload_part(
                    Bucket=BUCKET,
                    Key=key,
                    UploadId=upload["UploadId"],
                    PartNumber=number,
                    Body=part,
                    **({"ContentMD5": _md5(part)} if md5 else {}),
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )

    return run


def rclone(*flags: str) -> Upload:
    """``rclone copyto`` of the file: its multipart upload (5 MiB x 4 by default) or, with a
    cutoff above the size and no multi-thread upload (which rclone starts at 256 MiB whatever
    the cutoff), one PUT. Its parts say ``application/octet-stream``, as the AWS SDK for Go
    sends them."""

    def run(store: RunningStore, _: bytes, path: Path, key: str) -> None:
        server = store.server
        remote = (
            f":s3,provider=Other,endpoint='{server.endpoint_url}',"
            f"access_key_id={server.env()['AWS_ACCESS_KEY_ID']},"
            f"secret_access_key={server.env()['AWS_SECRET_ACCESS_KEY']}:{BUCKET}/{key}"
        )
        tools.run([[rclone_binary(), "copyto", "--quiet", *flags, str(path), remote]])

    return run


FORMS: dict[str, Upload] = {
    "boto3 put_object, text/csv": put("text/csv"),
    "boto3 put_object, text/csv; charset=utf-8 (as rclone sends)": put("text/csv; charset=utf-8"),
    "boto3 put_object, application/octet-stream": put("application/octet-stream"),
    "boto3 put_object, text/csv, Content-MD5": put("text/csv", md5=True),
    "this project's streaming PUT (aws-chunked, CRC32C trailer)": streaming_put,
    "boto3 multipart, 16 MiB parts, no checksum": multipart(False),
    "boto3 multipart, 16 MiB parts, CRC32 per part": multipart(True),
    "boto3 multipart, 16 MiB parts, Content-MD5 per part": multipart(False, md5=True),
    "boto3 multipart, 16 MiB parts, each sent as application/octet-stream": multipart(
        False, as_bytes=True
    ),
    "this project's MultipartWriter (16 MiB x 1, CRC32C; parts as octet-stream)": worker_parts(),
    "this project's MultipartWriter, each part measured as an export's (sha256, rows)": (
        worker_parts(measured=True)
    ),
    "this project's MultipartWriter, 16 MiB x 2 (S3_PARTS_IN_FLIGHT=2)": worker_parts(2),
    "this project's MultipartWriter, 16 MiB x 2, each part measured": worker_parts(
        2, measured=True
    ),
    "rclone copyto, multipart (5 MiB x 4)": rclone(),
    "rclone copyto, multipart 16 MiB x 1": rclone(
        "--s3-chunk-size", "16M", "--s3-upload-concurrency", "1"
    ),
    "rclone copyto, one PUT": rclone("--s3-upload-cutoff", "4G", "--multi-thread-streams", "0"),
}


def measure(
    store: RunningStore, data: bytes, path: Path, rounds: int, forms: dict[str, Upload]
) -> dict[str, list[Any]]:
    figures: dict[str, list[Any]] = defaultdict(list)
    checker = store.server.client()
    for checksums in (False, True):
        client(store, checksums=checksums)
    client(store, checksums=False, as_bytes=True)
    worker_client(store)
    for round_ in range(rounds):
        for number, (name, upload) in enumerate(forms.items()):
            key = f"cost-{round_}-{number}.csv"
            with StoreLoad(store.server.pid) as load:
                started = time.monotonic()
                upload(store, data, path, key)
                seconds = time.monotonic() - started
            store_cpu, busy = load.since()
            stored = checker.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
            if stored != len(data):
                raise RuntimeError(f"{name}: {stored} bytes stored of {len(data)}")
            checker.delete_object(Bucket=BUCKET, Key=key)
            assert store_cpu is not None
            row = (len(data) / seconds / 2**20, store_cpu / (len(data) / GIB), busy)
            figures[name].append(row)
            print(
                f"  {name:62} {row[0]:6.1f} MiB/s  store {row[1]:5.1f} CPU-s/GiB  "
                f"{row[2]:.2f} cores busy",
                flush=True,
            )
        store.reclaim()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="seaweedfs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORDS",
        help="run only the forms whose name contains WORDS (repeatable); all by default",
    )
    args = parser.parse_args()
    unmatched = [words for words in args.only if not any(words in name for name in FORMS)]
    if unmatched:
        sys.exit(f"no form's name contains {unmatched}")
    forms = {
        name: upload
        for name, upload in FORMS.items()
        if not args.only or any(words in name for words in args.only)
    }
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    files = sorted(SPOOL_DIR.glob("*.csv"), key=lambda p: p.stat().st_size)
    path = next((p for p in files if 500 * 2**20 < p.stat().st_size < 600 * 2**20), None)
    if path is None:
        sys.exit("no 512 MiB CSV in bench/.spool: run python -m bench.corpus 512 first")
    data = path.read_bytes()
    described: dict[str, str] = {}
    table: list[str] = []
    for name in args.stores.split(","):
        with STORES[name].running() as store:
            described[name] = store.describe()
            print(f"== {described[name]}", flush=True)
            for form, rows in measure(store, data, path, args.rounds, forms).items():
                speed, cpu, busy = (statistics.median(column) for column in zip(*rows, strict=True))
                table.append(f"| {name} | {form} | {speed:.0f} | {cpu:.1f} | {busy:.2f} |")
    context = {
        "machine": machine(),
        "date": started,
        "source": f"`bench/.spool/{path.name}` ({len(data):,} bytes), read into memory first",
        "stores": described,
        "notes": [worker_settings_note()],
    }
    lines = [
        *header(shlex.join(["bench/store_cost.py", *sys.argv[1:]]), context),
        f"Medians of {args.rounds} interleaved rounds; store CPU is its server process's user +"
        " sys over the upload, busy cores the machine's over the same span (2 is all of it).",
        "",
        "| store | form of upload | MiB/s | store CPU s/GiB | busy cores |",
        "|---|---|---:|---:|---:|",
        *table,
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
