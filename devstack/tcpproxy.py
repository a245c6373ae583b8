"""A TCP forwarder on a loopback port that can be made to refuse connections, for outages.

A server that is merely stopped loses its state (the sandbox forgets its activities), so an
outage of "the connection is refused" is played in front of it instead: ``refuse()`` closes the
listening port and resets every open connection, as a host whose service went down does;
``accept()`` listens on the same port again. The server behind never notices.

``delay`` makes the server behind slow: every chunk it sends is held that many seconds first,
as a far or overloaded server's answers are.

``answer`` plays an HTTP server's refusals: it sees the head of every request and returns a
whole response to send instead (the request's body is read and dropped), or None to pass the
request on. So that it sees every request, each connection carries one: a passed request goes
on with ``Connection: close``, and the client opens a new connection for the next.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Self

from devstack.ports import free_port
from devstack.process import Managed

#: Bytes read at once from either side.
CHUNK = 64 * 1024


class TcpProxy(Managed):
    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        *,
        delay: float = 0.0,
        answer: Callable[[bytes], bytes | None] | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        #: Seconds each chunk from the server waits before it is passed on.
        self.delay = delay
        self.answer = answer
        #: The heads of the requests ``answer`` answered itself.
        self.answered: list[bytes] = []
        self.port = free_port()
        #: Connections accepted so far (also while refusing none are).
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Self:
        self.accept()
        return self

    def accept(self) -> None:
        """Listen (again) on the proxy's port."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self._listener = listener
        threading.Thread(target=self._serve, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        """Close the port (a connect is refused) and reset every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                # RST rather than FIN: the peer sees the connection broken, not a clean end.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # close() alone would wait for the pump blocked in recv() on it to return.
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stop(self) -> None:
        self.refuse()

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refused: the listener was closed
            # A thread per connection: one slow client never holds up the next accept.
            threading.Thread(target=self._connect, args=(listener, client), daemon=True).start()

    def _connect(self, listener: socket.socket, client: socket.socket) -> None:
        head: bytes | None = b""
        if self.answer is not None:
            head = self._request_head(client)
        if head is None:  # answered here
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.sendall(head)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._listener is not listener:  # refused meanwhile
                client.close()
                upstream.close()
                return
            self.accepted += 1
            self._open.update((client, upstream))
        self._relay(client, upstream)

    def _request_head(self, client: socket.socket) -> bytes | None:
        """The head of the connection's request, taken off the socket and made the
        connection's last (``Connection: close``), to pass on; None when ``answer`` answered
        it (and the connection is closed)."""
        client.settimeout(10)
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < CHUNK:
                peeked = client.recv(CHUNK, socket.MSG_PEEK)  # what has come so far
                if not peeked:
                    break
                if len(peeked) == len(head):
                    time.sleep(0.005)  # the rest of the head is on its way
                head = peeked
            head = head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            response = self.answer(head) if self.answer else None
            if response is None:
                _drain(client, len(head))
                client.settimeout(None)
                return _closing(head)
            # A client that sent "Expect: 100-continue" waits for a go-ahead before its body:
            # the final answer comes instead, and the body never does.
            waits = b"100-continue" in head.lower()
            _drain(client, len(head) + (0 if waits else _content_length(head)))
            client.sendall(response)
            self.answered.append(head)
        except OSError:
            pass
        client.close()
        return None

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both directions until each has ended, then close both (unless refuse() did)."""
        back = threading.Thread(target=_pump, args=(upstream, client, self.delay), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        with self._lock:
            mine = client in self._open
            self._open.difference_update((client, upstream))
        if mine:
            client.close()
            upstream.close()


def _pump(source: socket.socket, sink: socket.socket, delay: float = 0.0) -> None:
    """Copy until ``source`` ends, then end ``sink``'s side the same way."""
    try:
        while chunk := source.recv(CHUNK):
            if delay:
                time.sleep(delay)
            sink.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip() or 0)
    return 0


def _drain(sock: socket.socket, count: int) -> None:
    """Read and drop ``count`` bytes (a request's head and body)."""
    while count > 0:
        chunk = sock.recv(min(CHUNK, count))
        if not chunk:
            return
        count -= len(chunk)


def _closing(head: bytes) -> bytes:
    """``head`` with ``Connection: close`` in place of any Connection header."""
    lines = [
        line
        for line in head.rstrip(b"\r\n").split(b"\r\n")
        if not line.lower().startswith(b"connection:")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"
