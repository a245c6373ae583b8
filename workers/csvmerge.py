"""Joining the CSVs of several activities into one file with one header.

An export of more than 500 contact ids runs as several Constant Contact activities; every file
they produce starts with the same header (and maybe a byte-order mark). The first file is kept
whole; from each later one the BOM and the header record are dropped. The header ends at the
first newline outside quotes, which may arrive in any chunk.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from workers.exceptions import HeaderTooLong

#: A header longer than this is not a CSV header; refusing it bounds what we hold.
MAX_HEADER_BYTES = 1024 * 1024


def without_header(chunks: Iterable[bytes | bytearray]) -> Iterator[bytes | bytearray]:
    """Yield the bytes after the first record (and after a leading UTF-8 BOM)."""
    pending = bytearray()
    in_quotes = False
    skipping = True
    for chunk in chunks:
        if not skipping:
            yield chunk
            continue
        start = 0
        if not pending and chunk.startswith(codecs.BOM_UTF8):
            start = len(codecs.BOM_UTF8)
        for index in range(start, len(chunk)):
            byte = chunk[index]
            if byte == 0x22:
                in_quotes = not in_quotes
            elif byte == 0x0A and not in_quotes:
                skipping = False
                rest = chunk[index + 1 :]
                if rest:
                    yield rest
                break
        else:
            pending += chunk
            if len(pending) > MAX_HEADER_BYTES:
                raise HeaderTooLong(f"no end of header within {MAX_HEADER_BYTES} bytes")
