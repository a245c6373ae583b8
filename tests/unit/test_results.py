"""ResultsBody over a real loopback socket: whole bodies read, short or broken ones refused."""

from __future__ import annotations

import gzip

import pytest
import requests

from tests.rawhttp import raw_server
from workers.constant_contact.results import ResultsBody
from workers.exceptions import BodyIncomplete

BODY = b"Email,Notes\n" + b"".join(b'a%d@x.org,"two\nlines"\n' % i for i in range(20_000))


def head(**headers: str | int) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: text/csv", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(data: bytes, piece: int = 7000) -> bytes:
    frames = [
        b"%x\r\n%b\r\n" % (len(data[i : i + piece]), data[i : i + piece])
        for i in range(0, len(data), piece)
    ]
    return b"".join(frames) + b"0\r\n\r\n"


def open_body(url: str) -> ResultsBody:
    response = requests.get(url, stream=True, timeout=10)
    length = response.headers.get("Content-Length")
    return ResultsBody(response, int(length) if length else None)


def read_all(body: ResultsBody, size: int = 64 * 1024) -> bytes:
    return b"".join(bytes(chunk) for chunk in body.chunks(size))


def test_a_whole_body_is_read_into_buffers_that_are_each_the_callers() -> None:
    with raw_server(head(Content_Length=len(BODY)) + BODY) as url:
        body = open_body(url)
        chunks = list(body.chunks(100_000))
    assert b"".join(chunks) == BODY
    assert body.received == len(BODY)
    assert all(len(chunk) == 100_000 for chunk in chunks[:-1])
    assert len({id(chunk) for chunk in chunks}) == len(chunks)


def test_readinto_fills_the_whole_buffer_until_the_end() -> None:
    with raw_server(head(Content_Length=len(BODY)) + BODY) as url:
        body = open_body(url)
        buffer = bytearray(len(BODY) // 3 + 5)
        first = body.readinto(buffer)
        assert first == len(buffer)
        assert bytes(buffer) == BODY[:first]
        rest = read_all(body)
    assert BODY[:first] + rest == BODY


def test_a_body_shorter_than_its_content_length_is_incomplete() -> None:
    with raw_server(head(Content_Length=len(BODY)) + BODY[:50_000]) as url:
        body = open_body(url)
        with pytest.raises(BodyIncomplete, match="50000 of"):
            read_all(body)


def test_a_chunked_body_cut_mid_chunk_is_incomplete() -> None:
    framed = chunked(BODY)
    with raw_server(head(Transfer_Encoding="chunked") + framed[: len(framed) // 2]) as url:
        body = open_body(url)
        with pytest.raises(BodyIncomplete, match="broke after"):
            read_all(body)


def test_a_chunked_body_cut_between_chunks_is_incomplete() -> None:
    framed = chunked(BODY)
    cut = framed.index(b"\r\n", 7000 * 3) + 2  # right after a chunk's data
    with raw_server(head(Transfer_Encoding="chunked") + framed[:cut]) as url:
        body = open_body(url)
        with pytest.raises(BodyIncomplete):
            read_all(body)


def test_a_whole_chunked_body_is_read() -> None:
    with raw_server(head(Transfer_Encoding="chunked") + chunked(BODY)) as url:
        assert read_all(open_body(url), 1 << 20) == BODY


def test_a_gzip_body_is_decoded_and_its_length_still_checked() -> None:
    packed = gzip.compress(BODY)
    with raw_server(head(Content_Length=len(packed), Content_Encoding="gzip") + packed) as url:
        assert read_all(open_body(url)) == BODY
    with (
        raw_server(
            head(Content_Length=len(packed), Content_Encoding="gzip") + packed[:-100]
        ) as url,
        pytest.raises(BodyIncomplete),
    ):
        read_all(open_body(url))
