"""The streaming conversion of Constant Contact's CSV (``workers.export.formats``): each format read
back with its own reader (gzip + csv, zstandard + csv, gzip + json, pyarrow) holds the source's
rows under field names, typed where the format has types; chunk boundaries fall anywhere."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest
import zstandard

from workers.export.columns import columns_of, snake_case
from workers.export.formats import FORMATS, ConversionError, Converted

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
