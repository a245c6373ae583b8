"""Free loopback ports and waiting for a server to accept connections."""

from __future__ import annotations

import socket
import subprocess
import time

#: How often a start-up check looks again while a child process boots.
POLL_INTERVAL = 0.05


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once the port accepts connections; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")
