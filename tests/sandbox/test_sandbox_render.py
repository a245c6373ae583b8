"""CSV rendering and the spool, without HTTP."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from sandbox.contacts import ContactStatus, ContactUniverse
from sandbox.csvfile import UTF8_BOM, CsvFormat, ExportFileInfo, render_csv
from sandbox.exportspec import parse_export_request
from sandbox.fields import LABELS, ContactField
from sandbox.selection import unknown_references
from sandbox.spool import RenderState, Spool

UNIVERSE = ContactUniverse(seed=5, size=1_500)
PLAIN = CsvFormat()


def render(body: dict[str, object], fmt: CsvFormat = PLAIN) -> tuple[bytes, ExportFileInfo]:
    out = io.BytesIO()
    info = render_csv(UNIVERSE, parse_export_request(json.dumps(body).encode()), fmt, out)
    return out.getvalue(), info


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_full_export_round_trips_through_the_csv_module() -> None:
    data, info = render({})
    rows = rows_of(data)
    assert rows[0] == [LABELS[f] for f in ContactField]
    assert len(rows) - 1 == UNIVERSE.size
    for index in (0, 17, 1_499):
        assert tuple(rows[index + 1]) == UNIVERSE.contact(index)[3:]
    assert info.rows == UNIVERSE.size
    assert info.bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    # Quoted fields really do contain raw newlines, so line counting would be wrong.
    assert data.count(b"\n") > UNIVERSE.size + 1


def test_contact_ids_render_in_request_order_with_status_filter() -> None:
    order = [40, 3, 977, 12, 500]
    ids = [UNIVERSE.contact_id(i) for i in order]
    data, _ = render({"contact_ids": ids, "fields": ["email_address"]})
    assert [r[0] for r in rows_of(data)[1:]] == [UNIVERSE.contact(i).email_address for i in order]
    data, _ = render({"contact_ids": ids, "status": "active", "fields": ["email_address"]})
    expected = [
        UNIVERSE.contact(i).email_address
        for i in order
        if UNIVERSE.traits(i).status is ContactStatus.ACTIVE
    ]
    assert [r[0] for r in rows_of(data)[1:]] == expected


def test_bom_and_line_endings() -> None:
    lf, _ = render({"fields": ["first_name", "notes"]})
    crlf, _ = render({"fields": ["first_name", "notes"]}, CsvFormat(bom=True, crlf=True))
    assert not lf.startswith(UTF8_BOM)
    assert lf.startswith(b"First name,Notes\n")
    assert crlf.startswith(UTF8_BOM + b"First name,Notes\r\n")
    assert rows_of(lf) == rows_of(crlf)


def test_filters_select_the_expected_contacts() -> None:
    list_id = UNIVERSE.lists[2]
    data, _ = render({"list_ids": [list_id], "status": "unsubscribed", "fields": ["email_address"]})
    expected = [
        UNIVERSE.contact(i).email_address
        for i in range(UNIVERSE.size)
        if UNIVERSE.traits(i).lists >> 2 & 1
        and UNIVERSE.traits(i).status is ContactStatus.UNSUBSCRIBED
    ]
    assert expected
    assert [r[0] for r in rows_of(data)[1:]] == expected
    data, _ = render({"segment_id": 4, "fields": ["email_address"]})
    expected = [
        UNIVERSE.contact(i).email_address
        for i in range(UNIVERSE.size)
        if UNIVERSE.in_segment(UNIVERSE.traits(i), 4)
    ]
    assert [r[0] for r in rows_of(data)[1:]] == expected


def test_unknown_references_name_the_bad_ids() -> None:
    spec = parse_export_request(
        json.dumps({"contact_ids": [UNIVERSE.contact_id(1), UNIVERSE.unknown_contact_id]}).encode()
    )
    errors = unknown_references(UNIVERSE, spec)
    assert len(errors) == 1
    assert UNIVERSE.unknown_contact_id in errors[0]


def test_spool_reuses_a_completed_file_across_instances(tmp_path: Path) -> None:
    spec = parse_export_request(b'{"fields": ["email_address", "first_name"]}')
    first = Spool(tmp_path, UNIVERSE, CsvFormat()).job_for(spec)
    assert first.done.wait(10)
    assert first.state is RenderState.DONE
    assert first.info is not None
    mtime = first.csv_path.stat().st_mtime_ns
    second = Spool(tmp_path, UNIVERSE, CsvFormat()).job_for(spec)
    assert second.state is RenderState.DONE  # no thread needed: loaded from disk
    assert second.info == first.info
    assert second.csv_path.stat().st_mtime_ns == mtime
    other = Spool(tmp_path, UNIVERSE, CsvFormat(crlf=True)).job_for(spec)
    assert other.csv_path != first.csv_path
    assert other.done.wait(10)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
