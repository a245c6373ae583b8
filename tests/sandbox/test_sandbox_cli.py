"""The command line: ready line, ready file, format flags, spool reuse, memory, shutdown."""

from __future__ import annotations

import csv
import hashlib
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from sandbox_test_client import Api

import sandbox
from sandbox.testing import SandboxProcess, SandboxStartError

FIELDS = ["email_address", "first_name", "notes"]
PROJECT_ROOT = Path(sandbox.__file__).resolve().parent.parent


def export_once(sb: SandboxProcess, body: dict[str, object]) -> tuple[str, bytes, dict[str, str]]:
    api = Api(sb, token="t")
    try:
        created = api.create(body).json()
        final = api.wait(created)
        assert final["state"] == "completed", final
        response = api.get(final["_links"]["results"]["href"])
        return created["_links"]["results"]["href"], response.content, dict(response.headers)
    finally:
        api.close()


def test_ready_line_ready_file_and_clean_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "url.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--ready-file", str(ready), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        assert line.endswith("\n")
        assert ready.read_text().strip() == line.removeprefix("sandbox listening on ").strip()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
        assert process.returncode == 0, stderr
        assert stdout == b""  # exactly one line was ever printed
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_bom_crlf_and_chunked_flags() -> None:
    args = ["--bom", "--crlf", "--chunked"]
    with SandboxProcess(tokens=["t"], rate_limit=0, contacts=300, extra_args=args) as sb:
        href, data, headers = export_once(sb, {"fields": FIELDS})
        info = sb.export_info(href.rsplit("/", 1)[1])
    assert headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in headers
    assert data.startswith(b"\xef\xbb\xbfEmail address - other,First name,Notes\r\n")
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert len(rows) - 1 == info["rows"] == 300


def test_default_format_is_lf_without_bom() -> None:
    with SandboxProcess(tokens=["t"], rate_limit=0, contacts=50) as sb:
        _, data, headers = export_once(sb, {"fields": FIELDS})
    assert int(headers["Content-Length"]) == len(data)
    assert data.startswith(b"Email address - other,First name,Notes\n")


def test_spool_dir_is_reused_across_runs(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    args = ["--spool-dir", str(spool)]
    with SandboxProcess(tokens=["t"], rate_limit=0, contacts=500, extra_args=args) as sb:
        _, first, _ = export_once(sb, {"fields": FIELDS, "status": "active"})
    [csv_file] = spool.glob("*.csv")
    mtime = csv_file.stat().st_mtime_ns
    with SandboxProcess(tokens=["t"], rate_limit=0, contacts=500, extra_args=args) as sb:
        _, second, _ = export_once(sb, {"status": "active", "fields": FIELDS})
        _, other, _ = export_once(sb, {"fields": FIELDS})
    assert second == first
    assert other != first
    assert csv_file.stat().st_mtime_ns == mtime  # served from the kept file, not re-rendered
    assert len(list(spool.glob("*.csv"))) == 2
    assert not [p for p in spool.iterdir() if ".tmp-" in p.name]


def test_large_export_streams_with_small_memory() -> None:
    contacts = 200_000
    with SandboxProcess(tokens=["t"], rate_limit=0, contacts=contacts, processing_seconds=0) as sb:
        process = psutil.Process(sb.pid)
        api = Api(sb, token="t")
        try:
            created = api.create({"fields": ["email_address", "updated_at"]}).json()
            peak = process.memory_info().rss
            deadline = time.monotonic() + 30
            while api.get(created["_links"]["self"]["href"]).json()["state"] != "completed":
                peak = max(peak, process.memory_info().rss)
                assert time.monotonic() < deadline
                time.sleep(0.05)
            info = sb.export_info(created["_links"]["results"]["href"].rsplit("/", 1)[1])
            with api.get(created["_links"]["results"]["href"], stream=True) as response:
                received = sum(len(chunk) for chunk in response.iter_content(1 << 20))
                peak = max(peak, process.memory_info().rss)
        finally:
            api.close()
    assert info["rows"] == contacts
    assert received == info["bytes"]
    assert peak < 120 * 1024 * 1024, f"sandbox RSS peaked at {peak / 2**20:.0f} MiB"


def test_start_failure_reports_stderr() -> None:
    with pytest.raises(SandboxStartError) as caught:
        SandboxProcess(extra_args=["--fault", '{"endpoint": "nowhere"}']).start()
    assert "invalid fault rule" in str(caught.value)
