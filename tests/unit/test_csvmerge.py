from __future__ import annotations

import codecs
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.csvmerge import MAX_HEADER_BYTES, without_header
from workers.exceptions import HeaderTooLong

FILE = b'"Email, address",Notes\r\nann@example.com,"two\nlines"\r\nbob@example.com,x\r\n'


@given(st.lists(st.integers(0, len(FILE)), max_size=8), st.booleans())
def test_the_header_goes_whatever_the_chunking(cuts: list[int], bom: bool) -> None:
    data = (codecs.BOM_UTF8 if bom else b"") + FILE
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    assert b"".join(without_header(chunks)) == FILE.split(b"\r\n", 1)[1]


def test_a_header_only_file_leaves_nothing() -> None:
    assert b"".join(without_header([b"a,b\n"])) == b""


def test_an_endless_header_is_refused() -> None:
    with pytest.raises(HeaderTooLong):
        list(without_header([b"x" * (MAX_HEADER_BYTES + 1)]))
