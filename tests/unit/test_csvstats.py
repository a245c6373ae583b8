"""Row counting must agree with Python's csv module however the bytes are chunked."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import random
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from workers import csvstats
from workers.csvstats import CsvStats

cell = st.text(alphabet=st.sampled_from(list('ab,"\n\r é中😀 ')), max_size=8)
table = st.lists(st.lists(cell, min_size=1, max_size=4), min_size=1, max_size=12)


def render(rows: list[list[str]], line_end: str) -> bytes:
    """RFC 4180: a cell holding a comma, quote, CR or LF is quoted, its quotes doubled."""

    def cell_text(value: str) -> str:
        if any(c in value for c in ',"\r\n'):
            return '"' + value.replace('"', '""') + '"'
        return value

    return "".join(",".join(map(cell_text, row)) + line_end for row in rows).encode()


def feed_in_chunks(data: bytes, cuts: list[int]) -> CsvStats:
    stats = CsvStats()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        stats.feed(data[start:end])
    return stats


@given(table, st.sampled_from(["\n", "\r\n"]), st.lists(st.integers(0, 10_000), max_size=20))
def test_records_match_the_csv_module_for_any_chunking(
    rows: list[list[str]], line_end: str, cuts: list[int]
) -> None:
    data = render(rows, line_end)
    expected = list(csv.reader(io.StringIO(data.decode(), newline="")))
    stats = feed_in_chunks(data, cuts)
    assert stats.records == len(expected)
    assert stats.rows == len(expected) - 1
    assert stats.columns == expected[0]


@given(
    table,
    st.sampled_from([8, 16, 64, 72, 136]),
    st.lists(st.integers(0, 10_000), max_size=6),
)
def test_windows_carry_the_quote_side_across_words_and_windows(
    rows: list[list[str]], window: int, cuts: list[int]
) -> None:
    """Tiny windows put window edges, and the 64-bit words' edges, inside quoted values."""
    data = render(rows, "\n")
    expected = list(csv.reader(io.StringIO(data.decode(), newline="")))
    with mock.patch.object(csvstats, "WINDOW_BYTES", window):
        stats = feed_in_chunks(data, cuts)
    assert stats.records == len(expected)


def test_a_large_quoted_csv_counts_like_the_csv_module() -> None:
    """Several real windows, values with quotes and newlines anywhere, fed in odd-sized chunks."""
    pick = random.Random(6)
    values = ["plain", "a,b", 'say ""hi""', "two\nlines", "x" * 70, "\n\n", "é中😀"]
    rows = [[pick.choice(values) for _ in range(5)] for _ in range(40_000)]
    data = render(rows, "\r\n")
    assert len(data) > 3 * csvstats.WINDOW_BYTES
    expected = len(list(csv.reader(io.StringIO(data.decode(), newline=""))))
    whole, pieces = CsvStats(), CsvStats()
    whole.feed(data)
    for start in range(0, len(data), 100_003):
        pieces.feed(memoryview(data)[start : start + 100_003])
    assert whole.records == pieces.records == expected


def test_quote_and_newline_in_different_chunks_is_one_row() -> None:
    stats = CsvStats()
    for chunk in (b'Name,Notes\nAnn,"line one', b"\n", b'line two"\nBob,x\n'):
        stats.feed(chunk)
    assert stats.rows == 2


def test_last_row_without_newline_counts() -> None:
    stats = CsvStats()
    stats.feed(b"a,b\n1,2\n3,4")
    assert stats.rows == 2


def test_header_only_has_no_rows_and_bom_is_not_a_column_name() -> None:
    stats = CsvStats()
    stats.feed(codecs.BOM_UTF8 + b"First name,Last name\r\n")
    assert stats.rows == 0
    assert stats.columns == ["First name", "Last name"]


def test_quoted_header_split_across_chunks() -> None:
    stats = CsvStats()
    stats.feed(b'"Email, other",Up')
    stats.feed(b"dated At\nx,y\n")
    assert stats.columns == ["Email, other", "Updated At"]
    assert stats.rows == 1


def test_views_of_part_buffers_count_like_bytes() -> None:
    data = b'a,b\n1,"x\n' + b'y"\n2,3\n'
    whole = bytearray(data)
    stats = CsvStats()
    stats.feed(memoryview(whole))
    assert stats.rows == 2
    halves = CsvStats()
    view = memoryview(whole)
    halves.feed(view[:8])
    halves.feed(view[8:])
    assert halves.rows == 2
    assert halves.columns == ["a", "b"]
