"""The checksums stored bodies carry: the values S3 expects, under the names S3 gives them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from workers.s3.checksums import DEFAULT, Checksum, body_checksum, sends_checksums
from workers.settings import Settings

#: The check value every CRC's catalogue gives: the checksum of the ASCII digits 1-9.
CHECK_INPUT = b"123456789"


@pytest.mark.parametrize(
    ("algorithm", "check", "header", "parameter", "name"),
    [
        ("crc32c", 0xE3069283, "x-amz-checksum-crc32c", "ChecksumCRC32C", "CRC32C"),
        ("crc32", 0xCBF43926, "x-amz-checksum-crc32", "ChecksumCRC32", "CRC32"),
    ],
)
def test_each_algorithm_gives_its_catalogued_check_value_under_s3s_names(
    algorithm: str, check: int, header: str, parameter: str, name: str
) -> None:
    checksum = Settings(cc_access_token="t", s3_checksum_algorithm=algorithm).checksum  # type: ignore[arg-type]
    assert checksum.update(CHECK_INPUT) == check
    # Fed in pieces, from any buffer type, it is the same value: parts and chunks arrive so.
    value = 0
    for piece in (b"1234", bytearray(b"56"), memoryview(b"789")):
        value = checksum.update(piece, value)
    assert value == check
    assert (checksum.header, checksum.parameter, checksum.name) == (header, parameter, name)
    assert checksum.of(CHECK_INPUT) == {parameter: checksum.b64(check)}


def test_values_are_base64_of_the_big_endian_bytes() -> None:
    assert DEFAULT.b64(0xE3069283) == "4waSgw=="  # e3 06 92 83


def test_crc32c_is_the_default() -> None:
    assert Settings(cc_access_token="t").checksum == DEFAULT == Checksum("crc32c")


def test_a_client_sends_a_checksum_only_when_configured_to() -> None:
    def Client(calculation: str) -> SimpleNamespace:  # noqa: N802 — stands in for a boto3 client
        config = SimpleNamespace(request_checksum_calculation=calculation)
        return SimpleNamespace(meta=SimpleNamespace(config=config))

    assert sends_checksums(Client("when_supported"))
    assert body_checksum(Client("when_supported"), DEFAULT, b"x") == DEFAULT.of(b"x")
    assert not sends_checksums(Client("when_required"))
    assert body_checksum(Client("when_required"), DEFAULT, b"x") == {}
