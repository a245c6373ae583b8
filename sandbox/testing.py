"""Helpers for other packages' tests: run the sandbox as a real subprocess.

A subprocess (rather than an in-process server) keeps the sandbox's threads and
GIL out of the code under test, and exercises the same entry point the demo
and benchmarks use.  Control calls use urllib so this module stays stdlib-only.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlencode

from sandbox.config import READY_LINE_PREFIX

DEFAULT_TEST_TOKEN = "sandbox-test-token"  # noqa: S105 - a fixture value, not a secret
DEFAULT_TEST_CONTACTS = 1_000
DEFAULT_TEST_PROCESSING_SECONDS = 0.2
STARTUP_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
CONTROL_TIMEOUT_SECONDS = 30.0


class SandboxStartError(RuntimeError):
    """The sandbox did not print its ready line in time; the message includes its stderr."""


class SandboxProcess:
    """``with SandboxProcess(tokens=["t"]) as sb: requests.get(sb.api_base + ...)``."""

    def __init__(
        self,
        *,
        tokens: Sequence[str] = (DEFAULT_TEST_TOKEN,),
        contacts: int = DEFAULT_TEST_CONTACTS,
        processing_seconds: float = DEFAULT_TEST_PROCESSING_SECONDS,
        seed: int | None = None,
        rate_limit: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self.tokens = list(tokens)
        args = ["--host", "127.0.0.1", "--port", "0", "--contacts", str(contacts)]
        args += ["--processing-seconds", str(processing_seconds)]
        for token in self.tokens:
            args += ["--token", token]
        if seed is not None:
            args += ["--seed", str(seed)]
        if rate_limit is not None:
            args += ["--rate-limit", str(rate_limit)]
        self.args = [*args, *extra_args]
        self.startup_timeout = startup_timeout
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def api_base(self) -> str:
        return f"{self.url}/v3"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/default/v1/token"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self) -> SandboxProcess:
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", *self.args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        try:
            self.url = self._await_ready_line()
        except BaseException:
            self.stop()
            raise
        return self

    def _await_ready_line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.startup_timeout
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"no ready line within {self.startup_timeout:.0f}s")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._proc.wait(STOP_TIMEOUT_SECONDS)
                    self._fail(f"exited with status {self._proc.returncode} before listening")
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        if not line.startswith(READY_LINE_PREFIX):
            self._fail(f"unexpected first stdout line {line!r}")
        return line[len(READY_LINE_PREFIX) :].strip()

    def _fail(self, why: str) -> None:
        raise SandboxStartError(f"sandbox {why}; args={self.args}; stderr:\n{self.stderr_text()}")

    def stderr_text(self) -> str:
        """Everything the sandbox wrote to stderr so far (request log, tracebacks)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        self._stderr.seek(0, os.SEEK_END)
        return text

    def stop(self) -> int | None:
        """Terminate (SIGTERM, then SIGKILL after a grace period); return the exit status."""
        proc, self._proc = self._proc, None
        status: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            status = proc.returncode
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return status

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control API -------------------------------------------------------------

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call ``/__sandbox__`` + ``path``; raise urllib.error.HTTPError on non-2xx."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - a loopback URL we built
            f"{self.url}/__sandbox__{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_SECONDS) as response:  # noqa: S310 - loopback URL we built
            return json.loads(response.read())

    def add_faults(self, *rules: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("POST", "/faults", {"rules": list(rules)})[
            "rules"
        ]
        return result

    def clear_faults(self) -> None:
        self.control("DELETE", "/faults")

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "/faults")["rules"]
        return result

    def requests(
        self, endpoint: str | None = None, activity_id: str | None = None
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("endpoint", endpoint), ("activity_id", activity_id)) if v}
        query = f"?{urlencode(params)}" if params else ""
        result: list[dict[str, Any]] = self.control("GET", f"/requests{query}")
        return result

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/requests/summary")
        return result

    def export_info(self, file_export_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", f"/exports/{file_export_id}")
        return result

    def catalog(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/catalog")
        return result

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change runtime settings (processing_seconds, rate_limit, daily_quota, max_queued,
        chunked)."""
        result: dict[str, Any] = self.control("POST", "/config", settings)
        return result

    def set_processing_seconds(self, seconds: float) -> None:
        self.configure(processing_seconds=seconds)

    def expire_tokens(self, token: str | None = None) -> int:
        body = {"token": token} if token is not None else {}
        expired: int = self.control("POST", "/tokens/expire", body)["expired"]
        return expired

    def reset(self) -> None:
        self.control("POST", "/reset")
