"""The checksum each body the worker stores carries, so the server can refuse a damaged one.

One algorithm per client configuration (``S3_CHECKSUM_ALGORITHM``), used everywhere a body is
sent: the CRC32C (default) or CRC32 of every part, of the whole object in a streaming PUT's
trailer, and of the manifest. The worker computes it itself and hands botocore the value, so
botocore neither reads a body again nor wraps it in its own chunked stream.

Why CRC32C: it is the checksum S3 takes that CPUs compute in hardware (SSE 4.2 ``crc32``). Here
(Intel Xeon, AVX-512) the ``crc32c`` package takes 0.09 CPU-s/GiB where zlib's CRC32 takes 0.53,
more than half of sha256's 0.96 (``bench/passes.py``, bench/results/passes.md): it was the largest
share of the download's CPU after sha256 and the row count. AWS S3, MinIO and SeaweedFS check
CRC32C; ``rclone serve s3`` checks neither. botocore computes CRC32C only through ``awscrt``, whose
signer breaks streamed uploads (``workers.startup.check_s3_signer``), which is why the worker does
not ask it to. CRC32 stays for stores that know no other (``S3_CHECKSUM_ALGORITHM=crc32``).

A multipart upload names its algorithm when it is created, as S3 requires of parts that carry
one; its parts' checksums are listed again at completion (``MultipartWriter``).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import crc32c

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: The algorithms S3 takes that the worker can compute without awscrt.
Algorithm = Literal["crc32c", "crc32"]
#: Characters of a 4-byte checksum in base64, as every header and trailer carries it.
B64_LENGTH = 8

#: What a checksum reads: part buffers, chunks, views of either.
Chunk = bytes | bytearray | memoryview


_FUNCTIONS: dict[Algorithm, Callable[[Chunk, int], int]] = {
    "crc32c": crc32c.crc32c,
    "crc32": zlib.crc32,
}


@dataclass(frozen=True)
class Checksum:
    """One algorithm's names in S3's API, and its values as S3 writes them."""

    algorithm: Algorithm

    def __post_init__(self) -> None:
        if self.algorithm not in _FUNCTIONS:
            raise ValueError(f"unknown checksum algorithm {self.algorithm!r}")

    @property
    def header(self) -> str:
        """The header (or trailer) that carries the value: ``x-amz-checksum-crc32c``."""
        return f"x-amz-checksum-{self.algorithm}"

    @property
    def name(self) -> str:
        """The algorithm as S3's API spells it: ``CRC32C``."""
        return self.algorithm.upper()

    @property
    def parameter(self) -> str:
        """The boto3 parameter of PutObject and UploadPart: ``ChecksumCRC32C``."""
        return f"Checksum{self.name}"

    def update(self, data: Chunk, value: int = 0) -> int:
        """The checksum of what ``value`` covered followed by ``data``; 0 starts one."""
        return _FUNCTIONS[self.algorithm](data, value)

    def b64(self, value: int) -> str:
        """``value`` as S3 takes it: its four big-endian bytes, base64."""
        return base64.b64encode(value.to_bytes(4, "big")).decode()

    def of(self, data: Chunk) -> dict[str, Any]:
        """The parameter that sends ``data``'s checksum with a PutObject or UploadPart."""
        return {self.parameter: self.b64(self.update(data))}


#: What ``S3_CHECKSUM_ALGORITHM`` names by default.
DEFAULT = Checksum("crc32c")


def body_checksum(client: S3Client, checksum: Checksum, body: Chunk) -> dict[str, Any]:
    """``checksum.of(body)`` when ``client`` sends checksums (``S3_CHECKSUM=when_supported``).

    Given the value, botocore sends the body as it is; left to compute it on https, it wraps the
    body in an aws-chunked stream with the checksum in a trailer: a copy sent in small pieces,
    and sent chunked, which some stores (rclone) refuse.
    """
    if not sends_checksums(client):
        return {}
    return checksum.of(body)


def sends_checksums(client: S3Client) -> bool:
    """Whether ``client`` was configured to send a checksum with every body it can."""
    return getattr(client.meta.config, "request_checksum_calculation", None) == "when_supported"
