"""The streaming conversion of Constant Contact's CSV (``workers.export.formats``): each format read
back with its own reader (gzip + csv, zstandard + csv, gzip + json, pyarrow) holds the source's
rows under field names, typed where the format has types; chunk boundaries fall anywhere."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import threading
from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.exceptions import ConversionError
from workers.export import typed
from workers.export.columns import columns_of, snake_case
from workers.export.formats import FORMATS, Converted

SOURCE = (
    "\ufeffFirst name,Email address - other,Email lists,Birthday day,Email opt-in,"
    "Anniversary,Updated At,Favourite colour,Notes\r\n"
    'Ana,ana@example.com,"Newsletter, VIP",7,true,2019-05-17,2018-11-29 15:10:15 -0500,'
    'Blue,"two\r\nlines, ü"\r\n'
    "Bo,bo@example.com,,,false,,2019-11-25T16:29:13.057 -0500,,\r\n"
)
NAMES = [
    "first_name",
    "email_address",
    "email_lists",
    "birthday_day",
    "email_optin",
    "anniversary",
    "updated_at",
    "favourite_colour",
    "notes",
]


def chunked(text: str, size: int) -> list[bytes]:
    data = text.encode()
    return [data[i : i + size] for i in range(0, len(data), size)]


def convert(name: str, size: int = 7) -> tuple[bytes, Converted]:
    converted = Converted(FORMATS[name], chunked(SOURCE, size))
    return b"".join(converted), converted


def source_rows() -> list[list[str]]:
    return list(csv.reader(io.StringIO(SOURCE.removeprefix("\ufeff"), newline="")))[1:]


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_csv_gz_and_zst_keep_every_row_under_field_names(size: int) -> None:
    for name, unpack in (
        ("csv.gz", gzip.decompress),
        ("csv.zst", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)),
    ):
        data, converted = convert(name, size)
        rows = list(csv.reader(io.StringIO(unpack(data).decode(), newline="")))
        assert rows[0] == NAMES
        assert rows[1:] == source_rows()
        assert converted.rows == 2


def test_jsonl_gz_types_every_value() -> None:
    data, converted = convert("jsonl.gz")
    first, second = (json.loads(line) for line in gzip.decompress(data).decode().splitlines())
    assert first == {
        "first_name": "Ana",
        "email_address": "ana@example.com",
        "email_lists": "Newsletter, VIP",  # names may hold ", ": kept as text
        "birthday_day": 7,
        "email_optin": True,
        "anniversary": "2019-05-17",
        "updated_at": "2018-11-29T20:10:15.000Z",
        "favourite_colour": "Blue",
        "notes": "two\r\nlines, ü",
    }
    assert second["email_lists"] is None and second["birthday_day"] is None
    assert second["email_optin"] is False
    assert second["updated_at"] == "2019-11-25T21:29:13.057Z"
    assert [c.type for c in converted.columns][:7] == [
        "string",
        "string",
        "string",
        "integer",
        "boolean",
        "date",
        "timestamp",
    ]


def test_parquet_holds_the_same_typed_rows() -> None:
    data, converted = convert("parquet")
    table = pq.read_table(io.BytesIO(data))
    assert table.column_names == NAMES
    rows = table.to_pylist()
    assert rows[0]["updated_at"] == datetime(2018, 11, 29, 20, 10, 15, tzinfo=UTC)
    assert rows[0]["anniversary"] == date(2019, 5, 17)
    assert rows[0]["email_lists"] == "Newsletter, VIP"
    assert rows[1]["updated_at"] == datetime(2019, 11, 25, 21, 29, 13, 57000, tzinfo=UTC)
    assert rows[1]["birthday_day"] is None and converted.rows == 2


def test_an_empty_export_is_a_header_alone() -> None:
    header_only = SOURCE.split("\r\n", 1)[0] + "\r\n"
    data = b"".join(Converted(FORMATS["csv.gz"], [header_only.encode()]))
    assert gzip.decompress(data).decode() == ",".join(NAMES) + "\r\n"
    assert b"".join(Converted(FORMATS["jsonl.gz"], [header_only.encode()])) != b""  # valid gzip


def test_a_value_that_does_not_fit_its_type_fails_by_name() -> None:
    bad = "Updated At\r\nyesterday\r\n"
    with pytest.raises(ConversionError, match="row 1: column updated_at: 'yesterday' is not a"):
        b"".join(Converted(FORMATS["jsonl.gz"], [bad.encode()]))


def test_unknown_labels_get_stable_unique_names() -> None:
    assert snake_case("Favourite colour (2nd)") == "favourite_colour_2nd"
    columns = columns_of(["Email address - other", "email_address", "Custom!"])
    assert [c.name for c in columns] == ["email_address", "email_address_2", "custom"]


def test_csv_gz_keeps_the_rows_as_constant_contact_wrote_them() -> None:
    data, _ = convert("csv.gz", 3)
    _, body = SOURCE.encode().split(b"\r\n", 1)
    assert gzip.decompress(data) == (",".join(NAMES) + "\r\n").encode() + body


def test_a_row_with_too_few_fields_fails_by_count() -> None:
    bad = "First name,Last name\r\nAna,Lima\r\nBo\r\n"
    with pytest.raises(ConversionError, match="has 1 fields where the header has 2"):
        b"".join(Converted(FORMATS["parquet"], [bad.encode()]))


def test_a_misfit_far_into_the_export_is_named_by_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(typed, "SLAB_BYTES", 64)  # many slabs, the misfit in a late one
    rows = [f"{n}\r\n" for n in range(1, 300)] + ["seven\r\n"]
    source = "Birthday day\r\n" + "".join(rows)
    with pytest.raises(ConversionError, match="row 300: column birthday_day: 'seven' is not"):
        b"".join(Converted(FORMATS["jsonl.gz"], chunked(source, 50)))


CELL = st.text(st.characters(codec="utf-8"), max_size=12)


@given(
    rows=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=30),
    cut=st.integers(1, 64),
    slab=st.integers(1, 200),
)
@settings(max_examples=25, deadline=None)
def test_slabs_end_where_records_end_wherever_the_chunks_fall(
    rows: list[list[str]], cut: int, slab: int
) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    data = out.getvalue().encode()
    slabs = list(typed.record_slabs([data[i : i + cut] for i in range(0, len(data), cut)], slab))
    assert b"".join(slabs) == data
    parsed = [r for s in slabs for r in csv.reader(io.StringIO(s.decode(), newline=""))]
    assert parsed == [r for r in csv.reader(io.StringIO(data.decode(), newline=""))]


@given(rows=st.lists(st.tuples(CELL, st.integers(-(10**17), 10**17) | st.none()), max_size=20))
@settings(max_examples=25, deadline=None)
def test_json_lines_are_what_json_writes_for_each_row(rows: list[tuple[str, int | None]]) -> None:
    """json.dumps is the reference: any text (quotes, backslashes, control characters, any
    script) must come out as it writes it, and an empty cell as null."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(
        [["Notes", "Birthday day"], *[[text, "" if n is None else n] for text, n in rows]]
    )
    lines = gzip.decompress(b"".join(Converted(FORMATS["jsonl.gz"], [out.getvalue().encode()])))
    expected = "".join(
        json.dumps({"notes": text or None, "birthday_day": n}, ensure_ascii=False) + "\n"
        for text, n in rows
    )
    assert lines.decode() == expected


def test_a_format_knows_which_of_its_libraries_are_missing() -> None:
    assert FORMATS["parquet"].missing() == []  # this suite installs the formats extra
    absent = dataclasses.replace(FORMATS["parquet"], modules=("pyarrow", "no_such_library_x"))
    assert absent.missing() == ["no_such_library_x"]


def test_a_blank_line_is_a_contact_with_an_empty_value() -> None:
    """In a one-column export a contact without the value is a blank line: kept, as null."""
    source = "Email address - other\r\na@example.com\r\n\r\nb@example.com\r\n"
    data = b"".join(Converted(FORMATS["parquet"], [source.encode()]))
    assert pq.read_table(io.BytesIO(data)).column("email_address").to_pylist() == [
        "a@example.com",
        None,
        "b@example.com",
    ]


#: A timestamp cell in either of the guide's styles, with 0-9 digits of fraction and any offset.
TIMESTAMP_CELL = st.builds(
    lambda moment, separator, fraction, offset: (
        f"{moment:%Y-%m-%d}{separator}{moment:%H:%M:%S}{fraction} "
        f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    ),
    st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)),
    st.sampled_from([" ", "T"]),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9).map(lambda d: f".{d}")),
    st.integers(-14 * 60, 14 * 60),
)


@given(cells=st.lists(TIMESTAMP_CELL | st.just(""), min_size=1, max_size=20))
@settings(max_examples=60, deadline=None)
def test_timestamps_are_what_the_reference_reads_to_the_millisecond(cells: list[str]) -> None:
    """``Column.value`` is the reference; Arrow keeps milliseconds, cut (not rounded) as the
    reference's ISO text would be. A column whose fractions are all of three digits or fewer
    takes Arrow's cast directly, any other the regular expression first: both are drawn here,
    alone and mixed."""
    [column] = columns_of(["Updated At"])
    body = "".join(f"{cell}\n" for cell in cells).encode()
    [batch] = list(typed.typed_batches([column], [body]))
    expected = [
        None if value is None else value.replace(microsecond=value.microsecond // 1000 * 1000)
        for value in (column.value(cell) for cell in cells)
    ]
    assert batch.column(0).to_pylist() == expected


@pytest.mark.parametrize("name", ["csv.gz", "csv.zst"])
def test_a_count_that_fails_on_its_thread_fails_the_conversion_and_leaves_no_thread(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are counted on a thread of their own (``Converted._renamed``): its failure
    must reach the caller, not be lost with the thread, nor leave the thread behind."""
    from workers import csvstats

    feed = csvstats.CsvStats.feed
    fed = []

    def failing(self: csvstats.CsvStats, chunk: bytes) -> None:
        fed.append(chunk)
        if len(fed) == 4:  # the header, then the third chunk of the body
            raise RuntimeError("count failed")
        feed(self, chunk)

    monkeypatch.setattr(csvstats.CsvStats, "feed", failing)
    with pytest.raises(RuntimeError, match="count failed"):
        b"".join(Converted(FORMATS[name], chunked(SOURCE, 7)))
    assert not [t for t in threading.enumerate() if t.name.startswith("csv-rows")]
