"""A TCP forwarder on a loopback port that can be made to refuse connections, for outages.

A server that is merely stopped loses its state (the sandbox forgets its activities), so an
outage of "the connection is refused" is played in front of it instead: ``refuse()`` closes the
listening port and resets every open connection, as a host whose service went down does;
``accept()`` listens on the same port again. The server behind never notices.

``delay`` makes the server behind slow: every chunk it sends is held that many seconds first,
as a far or overloaded server's answers are.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Self

from devstack.ports import free_port
from devstack.process import Managed

#: Bytes read at once from either side.
CHUNK = 64 * 1024


class TcpProxy(Managed):
    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", *, delay: float = 0.0
    ) -> None:
        self.target = (target_host, target_port)
        #: Seconds each chunk from the server waits before it is passed on.
        self.delay = delay
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
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # refused meanwhile
                    client.close()
                    upstream.close()
                    return
                self.accepted += 1
                self._open.update((client, upstream))
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

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
