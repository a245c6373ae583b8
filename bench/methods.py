"""One download-to-S3 method, run in a fresh process so its peak RSS is its own.

``python -m bench.methods METHOD RESULTS_URL BUCKET KEY`` streams the sandbox's CSV at
RESULTS_URL into s3://BUCKET/KEY (S3_ENDPOINT_URL and the AWS_* variables of the environment)
and prints one JSON line: seconds from the GET to the upload's end, bytes, peak and idle RSS.

The alternatives are written as a user of each library would write them, with its defaults;
``pipeline`` is this project's multipart path (ResultsBody -> copy_measured -> MultipartWriter,
configured from the environment like a worker), ``pipeline-iter`` the same writer fed the way
the task fed it before (iter_content chunks, copied into the part buffer), to measure the
readinto lever; ``single-put`` this project's one streaming PUT (``workers.s3.streamput``) at any
size.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
import psutil
import requests
from botocore.config import Config

from bench.corpus import TOKEN
from workers.constant_contact.results import ResultsBody
from workers.s3.storage import MultipartWriter, make_s3_client
from workers.s3.streamput import ChunkedBody, put_stream
from workers.settings import Settings
from workers.transfer import copy_measured

#: Chunk size asked of iter_content by the alternatives, as the old task did.
CHUNK = 1024 * 1024
#: The clients, made in ``main`` before the clock starts: a plain one and this project's.
CLIENT: Any = None
PROJECT_CLIENT: Any = None
#: This project's settings, from the environment a lever sets (its checksum, say).
SETTINGS: Settings


def plain_client() -> Any:
    """boto3 as a user would make it: defaults (signed payloads on http, CRC32 checksums)."""
    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT_URL"],
        config=Config(s3={"addressing_style": "path"}),
    )


def get(url: str, *, stream: bool = True) -> requests.Response:
    response = requests.get(
        url, headers={"Authorization": f"Bearer {TOKEN}"}, stream=stream, timeout=(10, 60)
    )
    response.raise_for_status()
    return response


def smart_open_method(url: str, bucket: str, key: str) -> dict[str, Any]:
    import smart_open

    response = get(url)
    params = {"client": CLIENT}
    with smart_open.open(f"s3://{bucket}/{key}", "wb", transport_params=params) as out:
        for chunk in response.iter_content(chunk_size=CHUNK):
            out.write(chunk)
    return {}


def upload_fileobj_method(url: str, bucket: str, key: str) -> dict[str, Any]:
    response = get(url)
    CLIENT.upload_fileobj(response.raw, bucket, key)
    return {}


def naive_method(url: str, bucket: str, key: str) -> dict[str, Any]:
    body = get(url, stream=False).content
    CLIENT.put_object(Bucket=bucket, Key=key, Body=body)
    return {}


def pipeline_method(url: str, bucket: str, key: str, *, in_place: bool = True) -> dict[str, Any]:
    settings = Settings(cc_access_token=TOKEN)  # only the S3 settings matter here
    client = PROJECT_CLIENT
    response = get(url)
    body = ResultsBody(response, int(response.headers["Content-Length"]))
    writer = MultipartWriter(
        client,
        bucket,
        key,
        part_size=settings.part_size,
        parts_in_flight=settings.s3_parts_in_flight,
        checksum=settings.checksum,
    )
    with writer:
        if in_place:
            summary = copy_measured(body.chunks(CHUNK), writer)
        else:
            summary = copy_measured(response.iter_content(chunk_size=CHUNK), writer)
        writer.complete()
    return {"sha256": summary.sha256, "rows": summary.rows, "buffers": writer.buffers_allocated}


def single_put_method(url: str, bucket: str, key: str) -> dict[str, Any]:
    """This project's one streaming PUT (``workers.s3.streamput``), whatever the size: the worker
    takes it only up to S3_SINGLE_PUT_MAX_MIB, so beyond that this lever shows what it would
    give."""
    response = get(url)
    size = int(response.headers["Content-Length"])
    body = ChunkedBody(ResultsBody(response, size), size, checksum=SETTINGS.checksum)
    summary, _ = put_stream(PROJECT_CLIENT, bucket, key, body, metadata={})
    return {"sha256": summary.sha256, "rows": summary.rows}


class ReadAheadBody(ChunkedBody):
    """Experiment (issue 17's guess): the chunks read and measured on a thread of their own, up
    to ``AHEAD`` ahead of the one being sent, so the send does not wait for the next read and
    its measuring. Measured against ChunkedBody on two cores (bench/results/stream-readahead.md):
    no faster, 76 against 78 % of curl on rclone-tmpfs and 82 against 87 % on SeaweedFS, so
    the worker does not use it. It ignores ``on_progress`` and ``before_end``: a lever only."""

    AHEAD = 3

    def __init__(self, source: Any, size: int) -> None:
        super().__init__(source, size, checksum=SETTINGS.checksum)
        import queue
        import threading

        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(self.AHEAD + 1):
            self._free.put(bytearray(len(self._buffer)))
        self._ready: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._ahead, daemon=True)
        self._thread.start()

    def _ahead(self) -> None:
        try:
            while True:
                buffer = self._free.get()
                self._buffer = buffer
                count = self._fill()
                if count:
                    content = memoryview(buffer)[:count]
                    self.measurement.feed(content)
                    self._crc = self.checksum.update(content, self._crc)
                self._ready.put((buffer, count))
                if not count:
                    return
        except BaseException as error:  # handed to the sending thread
            self._ready.put(error)

    def _next_frame(self) -> None:
        got = self._ready.get()
        if isinstance(got, BaseException):
            raise got
        buffer, count = got
        if count:
            if self._pieces_buffer is not None:
                self._free.put(self._pieces_buffer)
            self._pieces_buffer = buffer
            content = memoryview(buffer)[:count]
            self._pieces.extend((memoryview(b"%x\r\n" % count), content, memoryview(b"\r\n")))
            return
        trailer = f"0\r\n{self.checksum.header}:{self.checksum.b64(self._crc)}\r\n\r\n"
        self._pieces.append(memoryview(trailer.encode()))
        self._finished = True

    _pieces_buffer: bytearray | None = None


def single_put_ahead_method(url: str, bucket: str, key: str) -> dict[str, Any]:
    response = get(url)
    size = int(response.headers["Content-Length"])
    body = ReadAheadBody(ResultsBody(response, size), size)
    summary, _ = put_stream(PROJECT_CLIENT, bucket, key, body, metadata={})
    return {"sha256": summary.sha256, "rows": summary.rows}


METHODS: dict[str, Callable[[str, str, str], dict[str, Any]]] = {
    "smart_open": smart_open_method,
    "upload_fileobj": upload_fileobj_method,
    "naive": naive_method,
    "pipeline": pipeline_method,
    "pipeline-iter": lambda u, b, k: pipeline_method(u, b, k, in_place=False),
    "single-put": single_put_method,
    "single-put-ahead": single_put_ahead_method,
}


def main(argv: list[str]) -> None:
    method, url, bucket, key = argv
    global CLIENT, PROJECT_CLIENT, SETTINGS
    CLIENT = plain_client()
    SETTINGS = Settings(cc_access_token=TOKEN)
    PROJECT_CLIENT = make_s3_client(SETTINGS)
    if method == "smart_open":
        import smart_open  # noqa: F401 — imported before the clock starts
    idle = psutil.Process().memory_info().rss
    started = time.monotonic()
    extra = METHODS[method](url, bucket, key)
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "idle_rss": idle, **extra}))


if __name__ == "__main__":
    main(sys.argv[1:])
