"""Reading the CSV body of a results link as a stream, and proving it arrived whole.

A body that ends before its Content-Length, or whose chunked encoding breaks, must never be
mistaken for a complete file: both raise BodyIncomplete, which the task retries from the start.

The body is read with ``readinto`` straight from the socket into the caller's buffer. requests'
``iter_content`` hands out small chunks through urllib3 and http.client, each read allocating a
new buffer and copying it twice; at hundreds of MiB/s those copies hold the GIL for a third of a
core. A body with a Content-Encoding (gzip, ...) cannot be read raw: it goes through urllib3's
decoder, which also checks the encoded length itself.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests
import urllib3

from workers.exceptions import BodyIncomplete

#: Content-Encoding values under which the bytes on the wire are the file itself.
IDENTITY_ENCODINGS = frozenset({"", "identity"})

#: What a broken or stalled body raises below requests: resets and timeouts are OSErrors,
#: a short chunked body is http.client.IncompleteRead, urllib3 wraps both in its own errors.
_BROKEN = (
    OSError,
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
    requests.RequestException,
)


@dataclass
class ResultsBody:
    """A streaming CSV body; reading raises BodyIncomplete if it ends early or breaks."""

    response: requests.Response
    expected_size: int | None
    received: int = 0
    _raw: http.client.HTTPResponse | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        encoding = self.response.headers.get("Content-Encoding", "").strip().lower()
        if encoding in IDENTITY_ENCODINGS:
            # urllib3 keeps the http.client response it wraps in ``_fp``; reading it directly is
            # what lets the socket fill our buffer. Any other shape falls back to urllib3's read.
            raw = getattr(self.response.raw, "_fp", None)
            if isinstance(raw, http.client.HTTPResponse):
                self._raw = raw

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` (all of it unless the body ends first); 0 once the body is over.

        The end is checked against Content-Length when the server announced one.
        """
        view = memoryview(buffer).cast("B")
        filled = 0
        try:
            while filled < len(view):
                count = self._read_some(view[filled:])
                if count == 0:
                    break
                filled += count
        except _BROKEN as error:
            raise BodyIncomplete(
                f"results body broke after {self.received + filled} bytes"
            ) from error
        finally:
            view.release()
        self.received += filled
        if filled == 0:
            self._check_complete()
        return filled

    def _read_some(self, view: memoryview) -> int:
        if self._raw is not None:
            return self._raw.readinto(view)
        data = self.response.raw.read(len(view), decode_content=True)
        view[: len(data)] = data
        return len(data)

    def _check_complete(self) -> None:
        if self._raw is None:
            return  # urllib3 enforced the length of the encoded body while decoding
        if self.expected_size is not None and self.received != self.expected_size:
            raise BodyIncomplete(
                f"results body has {self.received} of {self.expected_size} announced bytes"
            )

    def chunks(self, size: int) -> BodyChunks:
        """The body as chunks of ``size`` bytes (the last may be shorter), each a new buffer."""
        return BodyChunks(self, size)


class BodyChunks:
    """Iterates a body in new buffers, and names its ``source`` so a consumer that can lend
    its own buffers (``workers.transfer.copy_measured``) reads the body in place instead."""

    def __init__(self, source: ResultsBody, size: int) -> None:
        self.source = source
        self._size = size

    def __iter__(self) -> Iterator[bytearray]:
        return self

    def __next__(self) -> bytearray:
        chunk = bytearray(self._size)
        count = self.source.readinto(chunk)
        if count == 0:
            raise StopIteration
        if count < self._size:
            del chunk[count:]
        return chunk
