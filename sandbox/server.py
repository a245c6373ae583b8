"""Lifecycle of one sandbox: bind, serve on a background thread, stop cleanly.

Used by the CLI and directly by tests that want an in-process server.  Stopping
cancels renders in flight and removes a temporary spool directory, so repeated
test runs leave nothing behind; a spool directory given explicitly is kept.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from sandbox.app import SandboxApp
from sandbox.config import SandboxConfig
from sandbox.handler import SandboxHTTPServer
from sandbox.state import SandboxState, build_state

SERVE_POLL_SECONDS = 0.1
"""How often serve_forever checks for shutdown; bounds the latency of stop()."""


class Sandbox:
    """A running sandbox; use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._temp_spool: Path | None = None
        if config.spool_dir is None:
            self._temp_spool = Path(tempfile.mkdtemp(prefix="cc-sandbox-spool-"))
        spool_dir = config.spool_dir or self._temp_spool
        assert spool_dir is not None
        try:
            self.state: SandboxState = build_state(config, spool_dir)
            self._server = SandboxHTTPServer(
                (config.host, config.port), SandboxApp(self.state), quiet=config.quiet
            )
        except BaseException:
            self._remove_temp_spool()
            raise
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_name, self._server.server_port
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v3"

    def start(self) -> str:
        """Start serving in a daemon thread; return the base URL."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_SECONDS},
            name="sandbox-http",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop accepting, cancel renders, and remove the temporary spool (idempotent)."""
        self._server.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.state.spool.close()
        self._remove_temp_spool()

    def _remove_temp_spool(self) -> None:
        if self._temp_spool is not None:
            shutil.rmtree(self._temp_spool, ignore_errors=True)
            self._temp_spool = None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
