"""Row counting and header capture for a CSV that arrives in arbitrary network chunks.

RFC 4180 lets a quoted value contain newlines, so a row ends only at a newline outside quotes.
Quote state is carried from one chunk to the next: a quote and the newline it protects may
arrive in different chunks. Doubled quotes (``""``) toggle twice and so cancel out.
"""

from __future__ import annotations

import codecs
import csv
import io

#: Bytes of header kept at most while waiting for its end; a longer header is not a CSV we know.
MAX_HEADER_BYTES = 1024 * 1024

_QUOTE = b'"'
_NEWLINE = b"\n"


class CsvStats:
    """Counts records and captures the header row as bytes stream past."""

    def __init__(self) -> None:
        self._in_quotes = False
        self._records = 0
        self._last_byte = b""
        self._header = bytearray()
        self._header_done = False

    def feed(self, chunk: bytes | memoryview) -> None:
        data = bytes(chunk) if isinstance(chunk, memoryview) else chunk
        if not data:
            return
        if not self._header_done:
            self._capture_header(data)
        if not self._in_quotes and _QUOTE not in data:
            self._records += data.count(_NEWLINE)
        else:
            self._count_quoted(data)
        self._last_byte = data[-1:]

    def _count_quoted(self, data: bytes) -> None:
        # Splitting on quotes gives pieces that alternate outside/inside quotes.
        inside = self._in_quotes
        for piece in data.split(_QUOTE):
            if not inside:
                self._records += piece.count(_NEWLINE)
            inside = not inside
        # One more toggle was applied than there were quotes.
        self._in_quotes = not inside

    def _capture_header(self, data: bytes) -> None:
        start = len(self._header)
        self._header.extend(data[: MAX_HEADER_BYTES - start])
        end = _header_end(self._header)
        if end is not None:
            del self._header[end:]
            self._header_done = True
        elif len(self._header) >= MAX_HEADER_BYTES:
            self._header_done = True

    @property
    def records(self) -> int:
        """Records seen so far, counting a last record that has no trailing newline."""
        unterminated = self._last_byte not in (b"", _NEWLINE)
        return self._records + (1 if unterminated else 0)

    @property
    def rows(self) -> int:
        """Data rows: records minus the header."""
        return max(self.records - 1, 0)

    @property
    def columns(self) -> list[str]:
        """The header row's names, with a UTF-8 byte-order mark removed."""
        raw = bytes(self._header)
        if raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        text = raw.decode("utf-8", errors="replace")
        for row in csv.reader(io.StringIO(text, newline="")):
            return row
        return []


def _header_end(data: bytes | bytearray) -> int | None:
    """Index of the newline that ends the first record, or None if it has not arrived."""
    inside = False
    for index, byte in enumerate(data):
        if byte == 0x22:
            inside = not inside
        elif byte == 0x0A and not inside:
            return index
    return None
