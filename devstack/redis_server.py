"""A Redis server of our own on a free loopback port, for tests that restart or kill it.

It keeps an append-only file, as a production broker should: without one a restart loses every
queued message, and no worker can finish what the broker forgot.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import redis

from devstack.ports import free_port, wait_for_port
from devstack.process import Managed

START_TIMEOUT = 20.0


class RedisServer(Managed):
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self._process, START_TIMEOUT)
        return self

    def stop(self) -> None:
        """Shut down cleanly (the AOF is flushed), as a restart by an operator would."""
        if self._process is None or self._process.poll() is not None:
            return
        # The server closes the connection as it goes down.
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=self.port).shutdown(nosave=False)
        self._process.wait(timeout=20)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()
