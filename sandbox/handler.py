"""HTTP/1.1 plumbing: parse requests, write responses, apply delivery faults, log.

Big files go out with ``socket.sendfile`` (zero-copy, the GIL released), so a
plain download runs at loopback speed and the sandbox is never the bottleneck
of a throughput benchmark.  Only when a fault or ``--chunked`` asks for it does
the body go through the slower block-by-block path.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

from sandbox.app import SandboxApp
from sandbox.requestlog import RequestRecord
from sandbox.wire import Endpoint, ErrorKey, FileBody, Request, Response, error_response

MAX_REQUEST_BODY = 1 << 20
"""Request bodies are small JSON or forms; anything larger is a client bug, refused with 413."""

BLOCK_SIZE = 1 << 20
"""Read size on the non-sendfile path: large writes keep chunked serving fast."""

PACE_TICKS_PER_SECOND = 20
"""A throttled body is sent in this many pieces per second, so the rate is smooth."""

KEEPALIVE_IDLE_SECONDS = 120.0
"""An idle keep-alive connection is closed after this, freeing its thread."""


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading server carrying the app; daemon threads so stopping never hangs."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SandboxApp, *, quiet: bool) -> None:
        self.app = app
        self.quiet = quiet
        self.stopping = threading.Event()
        self.log_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup, which can stall start-up."""
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


def _redacted(path: str) -> str:
    """Drop the values of any query parameter that looks like a credential."""
    parts = urlsplit(path)
    if not parts.query:
        return path
    pairs = [p.split("=", 1) for p in parts.query.split("&")]
    safe = [
        f"{p[0]}=***" if "token" in p[0].lower() or "secret" in p[0].lower() else "=".join(p)
        for p in pairs
    ]
    return f"{parts.path}?{'&'.join(safe)}"


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm holds the body
    # of an answer on a kept-alive connection until the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server_version = "ConstantContactSandbox/1.0"
    sys_version = ""
    timeout = KEEPALIVE_IDLE_SECONDS
    server: SandboxHTTPServer
    _sent = 0

    def handle(self) -> None:
        """Treat a client hanging up between requests as normal, not as a server error."""
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def version_string(self) -> str:
        return self.server_version

    def __getattr__(self, name: str) -> Callable[[], None]:
        """Send every method, known or not, through the app.

        ``BaseHTTPRequestHandler`` answers a method without a ``do_<METHOD>`` with an HTML
        501 page; Constant Contact answers 405 with its error body and an Allow header, and
        the app does the same once it sees the request (schemathesis's unsupported-method
        check sends TRACE, QUERY and others and found the 501).
        """
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: :meth:`_log` writes one richer line per request instead."""

    def log_message(self, format: str, *args: object) -> None:
        if not self.server.quiet:
            with self.server.log_lock:
                sys.stderr.write(f"[sandbox] {self.address_string()} {format % args}\n")
                sys.stderr.flush()

    def _dispatch(self) -> None:
        started = time.monotonic()
        generation = self.server.app.state.log.generation
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._sent = 0
        request, refusal = self._read_request()
        response = refusal or self._handle(request)
        status = self._send(response)
        self._log(response, status, started)
        if response.endpoint is not Endpoint.CONTROL:
            self.server.app.state.log.add(
                RequestRecord(
                    ts=ts,
                    method=self.command,
                    path=request.path,
                    endpoint=response.endpoint.value,
                    status=status,
                    token_id=response.token_id,
                    activity_id=response.activity_id,
                    file_export_id=response.file_export_id,
                    bytes_sent=self._sent,
                    faults=tuple(response.fault_ids),
                ),
                generation,
            )

    def _handle(self, request: Request) -> Response:
        try:
            return self.server.app.handle(request)
        except Exception:  # a sandbox bug must surface as a 500, not a hung client
            traceback.print_exc()
            return error_response(500, ErrorKey.SERVER_ERROR, "Sandbox internal error")

    def _read_request(self) -> tuple[Request, Response | None]:
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        # Blank values are kept so ``?limit=`` is refused like any other bad limit instead of
        # silently meaning "default" (schemathesis sent ``?limit=&state=`` and got a 200).
        query = parse_qs(parts.query, keep_blank_values=True)
        request = Request(self.command, parts.path, query, headers, b"")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            return request, error_response(411, None, "Chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_REQUEST_BODY:
            self.close_connection = True
            return request, error_response(413 if length > 0 else 400, None, "Bad Content-Length")
        body = self.rfile.read(length) if length else b""
        return Request(self.command, parts.path, request.query, headers, body), None

    def _send(self, response: Response) -> int:
        """Write ``response``; return the status actually sent."""
        source: BinaryIO | None = None
        if isinstance(response.body, FileBody):
            try:
                source = response.body.path.open("rb")
            except OSError:
                response = error_response(
                    500, ErrorKey.SERVER_ERROR, "Export file vanished", endpoint=response.endpoint
                )
        try:
            self._write(response, source)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        finally:
            if source is not None:
                source.close()
        return response.status

    def _write(self, response: Response, source: BinaryIO | None) -> None:
        delivery = response.delivery
        if delivery.delay_first_byte > 0:
            self.server.stopping.wait(delivery.delay_first_byte)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if delivery.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(response.body_size))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        plain = (
            not delivery.chunked
            and delivery.bytes_per_second is None
            and delivery.drop_after_bytes is None
        )
        if self.command == "HEAD":
            return  # a HEAD answer carries the headers of the body it does not send
        if plain and source is not None:
            self._sent = self.connection.sendfile(source)
        elif plain:
            assert isinstance(response.body, bytes)
            self.wfile.write(response.body)
            self._sent = len(response.body)
        else:
            blocks = _file_blocks(source) if source is not None else _bytes_blocks(response)
            self._write_shaped(blocks, response)

    def _write_shaped(self, blocks: Iterator[bytes], response: Response) -> None:
        """The slow path: chunk framing, pacing and dropped connections."""
        delivery = response.delivery
        limit = delivery.drop_after_bytes
        rate = delivery.bytes_per_second
        piece_size = max(1, rate // PACE_TICKS_PER_SECOND) if rate else BLOCK_SIZE
        started = time.monotonic()
        for block in blocks:
            if limit is not None:
                block = block[: max(0, limit - self._sent)]
            for offset in range(0, len(block), piece_size):
                piece = block[offset : offset + piece_size]
                frame = b"%x\r\n%b\r\n" % (len(piece), piece) if delivery.chunked else piece
                self.wfile.write(frame)
                self._sent += len(piece)
                if rate:
                    lag = started + self._sent / rate - time.monotonic()
                    if lag > 0:
                        self.server.stopping.wait(lag)
            if limit is not None and self._sent >= limit:
                break
        if limit is not None:
            self._drop_connection()
        elif delivery.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _drop_connection(self) -> None:
        """End the connection mid-body: the client sees fewer bytes than announced."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _log(self, response: Response, status: int, started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        details = [f"endpoint={response.endpoint.value}"]
        if response.token_id:
            details.append(f"token_id={response.token_id}")
        if response.fault_ids:
            details.append(f"faults={response.fault_ids}")
        self.log_message(
            '"%s %s" %d %dB %.1fms %s',
            self.command,
            _redacted(self.path),
            status,
            self._sent,
            elapsed_ms,
            " ".join(details),
        )


def _file_blocks(source: BinaryIO) -> Iterator[bytes]:
    while block := source.read(BLOCK_SIZE):
        yield block


def _bytes_blocks(response: Response) -> Iterator[bytes]:
    assert isinstance(response.body, bytes)
    if response.body:
        yield response.body
