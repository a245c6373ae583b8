"""Reading the CSV body of a results link as a stream, and proving it arrived whole.

A body that ends before its Content-Length, or whose chunked encoding breaks, must never be
mistaken for a complete file: both raise BodyIncomplete, which the task retries from the start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import requests

from workers.exceptions import BodyIncomplete


@dataclass
class ResultsBody:
    """A streaming CSV body; ``chunks`` raises BodyIncomplete if it ends early or breaks."""

    response: requests.Response
    expected_size: int | None
    received: int = 0

    def chunks(self, size: int) -> Iterator[bytes]:
        try:
            for chunk in self.response.iter_content(chunk_size=size):
                self.received += len(chunk)
                yield chunk
        except (requests.ConnectionError, requests.Timeout) as error:
            raise BodyIncomplete(f"results body broke after {self.received} bytes") from error
        except requests.exceptions.ChunkedEncodingError as error:
            raise BodyIncomplete(f"results body broke after {self.received} bytes") from error
        if self.expected_size is not None and self.received != self.expected_size:
            raise BodyIncomplete(
                f"results body has {self.received} of {self.expected_size} announced bytes"
            )
