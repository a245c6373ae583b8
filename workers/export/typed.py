"""Constant Contact's CSV rows as typed Arrow record batches, and those batches as JSON lines.

The typed formats (``jsonl.gz``, ``parquet``) parse slabs of whole records with pyarrow's CSV reader
and convert whole columns at once with Arrow's compute kernels: a C++ pass per column instead of
Python work per cell, which was 10-30 times slower (``bench/formats.py``). The rules are those of
``workers.export.columns``; ``Column.value`` stays their reference, and when a column does not
convert, it is what finds the row and value to name in the error.

Every column is read as text (Arrow infers nothing; ``NA`` stays ``NA``) and only an empty cell
is null. Checks come before casts: a cast alone would accept values the reference rejects
(``+7`` as an integer, say).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from workers.exceptions import ConversionError
from workers.export.columns import DATE, INTEGER, TIMESTAMP, Column

#: CSV bytes Arrow reads at once (a slab of whole records): large enough for Arrow's
#: per-call costs to vanish, small enough that a slab's columns, and their JSON or Parquet, stay
#: a few MiB (8 MiB gave no more speed for 40 MiB more memory, bench/formats.py).
SLAB_BYTES = 2 * 1024 * 1024
#: A record (one contact) longer than this is not one.
MAX_RECORD_BYTES = 64 * 1024 * 1024
_QUOTE = 0x22
_NEWLINE = 0x0A
#: Bytes at a slab's end searched for its last record end first (records are far shorter).
_TAIL_BYTES = 64 * 1024
#: ``2018-11-29 15:10:15 -0500`` -> ``2018-11-29T15:10:15-05:00``, which Arrow's cast to
#: milliseconds takes; a longer fraction is cut to milliseconds first (as the reference cuts it),
#: so the cast needs no finer unit, whose range (1677-2262) a date of birth may leave.
_ISO_OFFSET = (
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,3})?)[0-9]* "
    r"([+-][0-9]{2})([0-9]{2})$",
    r"\1T\2\3:\4",
)
_MS_UTC = pa.timestamp("ms", tz="UTC")
#: Control characters JSON wants as ``\\u00XX``, beyond the ones escaped by name below.
_OTHER_CONTROLS = r"[\x00-\x07\x0b\x0e-\x1f]"
#: What JSON escapes in a string: a quote, a backslash or a control character.
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'
_JSON_ESCAPES = (
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)


def schema(columns: list[Column]) -> Any:
    return pa.schema([(c.name, c.arrow_type()) for c in columns])


def typed_batches(columns: list[Column], body: Iterable[bytes | bytearray]) -> Iterator[Any]:
    """The rows after the header, as record batches of the columns' types.

    The body is cut into slabs of whole records (``record_slabs``) and Arrow reads each slab as
    a file of its own: its streaming reader would read up to 32 blocks ahead of the conversion
    on a thread of its own, which here cost 30 MiB and more of RSS for nothing. A row with more
    or fewer fields than the header, or a value that does not fit its column, raises
    ConversionError naming where it is.
    """
    misshapen: list[Any] = []

    def refuse(row: Any) -> str:
        misshapen.append(row)
        return "error"

    # One thread per slab: the slab's parse is already beside the caller's writing (``_ahead``),
    # and Arrow's own pool on top of it only contended for the same two cores (bench/formats.py
    # at 514 MiB: 68 MiB/s with it, 75 without).
    read_options = pcsv.ReadOptions(column_names=[c.name for c in columns], use_threads=False)
    # Constant Contact quotes line breaks inside values (notes, addresses).
    # A blank line is a row: in a one-column export, a contact whose value is empty.
    parse_options = pcsv.ParseOptions(
        newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=refuse
    )
    convert_options = pcsv.ConvertOptions(
        column_types={c.name: pa.string() for c in columns},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    target = schema(columns)

    def parse(slab: bytes) -> list[tuple[Any, list[Any]]]:
        """A slab's batches, each with its typed columns (None where a value misfits)."""
        table = pcsv.read_csv(
            pa.py_buffer(slab),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
        return [
            (batch, [_converted(c, batch.column(i)) for i, c in enumerate(columns)])
            for batch in table.to_batches()
            if batch.num_rows
        ]

    rows = 0
    for parsed in _ahead(parse, record_slabs(body, SLAB_BYTES)):
        try:
            batches = parsed.result()
        except pa.ArrowInvalid as error:
            if misshapen:
                row = misshapen[0]
                raise ConversionError(
                    f"a row after row {rows} has {row.actual_columns} fields where the header "
                    f"has {row.expected_columns}"
                ) from None
            raise ConversionError(f"after row {rows}: not CSV Arrow can read ({error})") from None
        for batch, arrays in batches:
            for i, column in enumerate(columns):
                if arrays[i] is None:
                    raise _misfit(column, batch.column(i), rows)
            rows += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=target)


def _ahead(parse: Callable[[bytes], Any], slabs: Iterator[bytes]) -> Iterator[Future[Any]]:
    """Each slab's parse and typing, the next one started before the one before is handed
    over: Arrow parses and types (without the GIL) on a thread of its own while the caller
    writes, as pyarrow's streaming reader parses for its own writer. Typing moved there from
    the caller's thread, which had been the busier of the two (bench/formats.py: it typed and
    wrote while the parse thread waited). The slabs themselves, and the body they come from,
    are read in the caller's thread; one slab waits parsed and typed at most."""
    with ThreadPoolExecutor(1, thread_name_prefix="csv-parse") as pool:
        pending: Future[Any] | None = None
        for slab in slabs:
            started = pool.submit(parse, slab)
            if pending is not None:
                yield pending
            pending = started
        if pending is not None:
            yield pending


def record_slabs(chunks: Iterable[bytes | bytearray], size: int) -> Iterator[bytes]:
    """The bytes of ``chunks`` in slabs of about ``size`` or more, each ending where a record
    does: at a line break outside quotes (a quoted value may hold line breaks).

    Each slab starts outside quotes, so a byte is inside them where the count of quotes up to
    it is odd: a running XOR, one numpy pass over the slab. A record longer than
    ``MAX_RECORD_BYTES`` is not a contact; it fails rather than growing the slab without end.
    """
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        if len(pending) < size:
            continue
        end = _last_record_end(pending)
        if end:
            yield bytes(pending[:end])
            del pending[:end]
        elif len(pending) > MAX_RECORD_BYTES:
            raise ConversionError(f"a row is longer than {MAX_RECORD_BYTES} bytes")
    if pending:
        yield bytes(pending)


def _last_record_end(data: bytearray) -> int:
    """Index just past the last line break outside quotes in ``data`` (which starts outside
    them); 0 if there is none. The quote state is a running XOR, computed only over the tail
    where the break is looked for: what comes before it counts only as a number of quotes."""
    view = np.frombuffer(data, dtype=np.uint8)
    try:
        tail = max(0, len(view) - _TAIL_BYTES)
        while True:
            before = int(np.count_nonzero(view[:tail] == _QUOTE)) % 2
            quotes = (view[tail:] == _QUOTE).view(np.uint8)
            inside = np.bitwise_xor.accumulate(quotes) ^ before
            ends = np.flatnonzero((view[tail:] == _NEWLINE) & (inside == 0))
            if len(ends):
                return tail + int(ends[-1]) + 1
            if tail == 0:
                return 0
            tail = max(0, tail - 8 * _TAIL_BYTES)
    finally:
        del view  # it pins ``data``, which the caller resizes


def _converted(column: Column, text: Any) -> Any:
    """The column typed, or None if a value does not fit it (``_misfit`` then finds which)."""
    if column.type == "string":
        return text
    try:
        fits = _FITS[column.type](text)
        if pc.all(pc.or_kleene(pc.is_null(text), fits)).as_py():
            return _CAST[column.type](text)
    except pa.ArrowInvalid:
        pass  # a value of the right shape that is still not one (2019-02-30)
    return None


def _misfit(column: Column, text: Any, rows_before: int) -> ConversionError:
    """The first value the reference rules refuse, by row number."""
    for index, cell in enumerate(text.to_pylist()):
        if cell is None:
            continue
        try:
            column.value(cell)
        except ValueError as error:
            return ConversionError(f"row {rows_before + index + 1}: {error}")
    last = rows_before + len(text)
    return ConversionError(
        f"rows {rows_before + 1}-{last}: column {column.name}: a value is not a {column.type}"
    )


def _timestamps(text: Any) -> Any:
    """Values that fit TIMESTAMP, in milliseconds UTC.

    Arrow's cast reads ``2018-11-29 15:10:15-0500`` (no space before the offset) with up to
    three digits of fraction. Each fitting value has that space six bytes from its end, so it is
    cut by position, no search; only a column with a finer fraction takes the regular
    expression, which cuts it to milliseconds (a fifth of the speed: it was the costliest step
    of the typed formats, bench/formats.py).
    """
    try:
        return pc.binary_replace_slice(text, start=-6, stop=-5, replacement="").cast(_MS_UTC)
    except pa.ArrowInvalid:
        pass  # a fraction finer than milliseconds, which the cast refuses to round
    iso = pc.replace_substring_regex(text, pattern=_ISO_OFFSET[0], replacement=_ISO_OFFSET[1])
    return iso.cast(_MS_UTC)


_FITS: dict[str, Callable[[Any], Any]] = {
    "integer": lambda text: pc.match_substring_regex(text, INTEGER.pattern),
    "boolean": lambda text: pc.is_in(pc.utf8_lower(text), value_set=pa.array(["true", "false"])),
    "date": lambda text: pc.match_substring_regex(text, DATE.pattern),
    "timestamp": lambda text: pc.match_substring_regex(text, TIMESTAMP.pattern),
}
_CAST: dict[str, Callable[[Any], Any]] = {
    "integer": lambda text: text.cast(pa.int64()),
    "boolean": lambda text: pc.equal(pc.utf8_lower(text), "true"),
    "date": lambda text: text.cast(pa.date32()),
    "timestamp": _timestamps,
}


def json_lines(columns: list[Column], batch: Any) -> memoryview:
    """The batch's rows as ``json.dumps`` of each row's dict would write them (``ensure_ascii``
    off), one per line, built column by column: the bytes of one Arrow string array."""
    fields = [
        pc.binary_join_element_wise(f'"{c.name}": ', _json_values(c, batch.column(i)), "")
        for i, c in enumerate(columns)
    ]
    lines = pc.binary_join_element_wise("{", pc.binary_join_element_wise(*fields, ", "), "}\n", "")
    return _joined(lines)


def _json_values(column: Column, values: Any) -> Any:
    if column.type in ("integer", "boolean"):
        text = values.cast(pa.string())
    elif column.type == "timestamp":
        # As UTC wall time without a zone, Arrow writes "2018-11-29 20:10:15.000" thirty times
        # faster than with one (or than strftime): no time zone lookups.
        wall = values.cast(pa.timestamp("ms")).cast(pa.string())
        text = pc.binary_join_element_wise(
            '"', pc.replace_substring(wall, " ", "T", max_replacements=1), 'Z"', ""
        )
    elif column.type == "date":
        text = _quoted(values.cast(pa.string()))
    elif not pc.any(pc.match_substring_regex(values, _NEEDS_ESCAPE)).as_py():
        text = _quoted(values)  # most columns: one pass finds nothing to escape
    elif pc.any(pc.match_substring_regex(values, _OTHER_CONTROLS)).as_py():
        # Rare: json's own escaping, cell by cell.
        text = pa.array(
            [
                json.dumps(v, ensure_ascii=False) if v is not None else None
                for v in values.to_pylist()
            ],
            pa.string(),
        )
    else:
        for raw, escaped in _JSON_ESCAPES:
            values = pc.replace_substring(values, pattern=raw, replacement=escaped)
        text = _quoted(values)
    return pc.fill_null(text, "null")


def _quoted(text: Any) -> Any:
    return pc.binary_join_element_wise('"', text, '"', "")


def _joined(strings: Any) -> memoryview:
    """The values of a string array without nulls, end to end, without copying them."""
    offsets = memoryview(strings.buffers()[1]).cast("i")
    first, last = offsets[strings.offset], offsets[strings.offset + len(strings)]
    return memoryview(strings.buffers()[2])[first:last]
