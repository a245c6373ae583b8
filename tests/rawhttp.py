"""A loopback HTTP server that answers one request with bytes given verbatim.

Raw bytes let a test lie about Content-Length or break the chunked framing exactly the way a
dropped connection does, which no well-behaved server library would do.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def raw_server(response: bytes, path: str = "/results.csv") -> Iterator[str]:
    """Answer one request with ``response``, then close; yields the URL to request."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            connection.sendall(response)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        thread.join(timeout=10)
        listener.close()
