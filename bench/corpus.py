"""The CSVs the benchmark streams: sandbox exports of a chosen size, rendered once and kept.

The sandbox renders at about 20 MB/s but serves a rendered file from its spool at memory speed
(sendfile), so every file is rendered into ``bench/.spool`` once and reused by later runs. A
file's size follows from the number of contacts (about 378 bytes per contact with the default
columns); the contact counts below are fixed because they are part of the spool key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from sandbox.testing import SandboxProcess

#: Where rendered CSVs are kept between runs (git-ignored).
SPOOL_DIR = Path(__file__).resolve().parent / ".spool"
#: The Bearer token the benchmark's sandboxes accept.
TOKEN = "bench-token"  # noqa: S105 — a local sandbox's fixed token
#: Contacts per nominal size in MiB: 378.4 bytes a contact with the sandbox's default columns.
CONTACTS_FOR_MIB = {64: 177_000, 512: 1_420_000, 2048: 5_675_000}
#: How long a first render may take (2 GiB at ~20 MB/s is about two minutes).
RENDER_TIMEOUT = 900.0
#: Seconds between polls of the activity while the sandbox renders.
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class CsvFile:
    """One rendered export: where the sandbox serves it, where its bytes lie, what they are."""

    nominal_mib: int
    results_url: str
    activity_id: str
    path: Path
    size: int
    sha256: str
    rows: int


def corpus_sandbox(nominal_mib: int) -> SandboxProcess:
    """A quiet sandbox whose ``{}`` export is the file of ``nominal_mib``; ``with`` starts it."""
    contacts = CONTACTS_FOR_MIB[nominal_mib]
    SPOOL_DIR.mkdir(parents=True, exist_ok=True)
    return SandboxProcess(
        tokens=[TOKEN],
        contacts=contacts,
        processing_seconds=0.1,
        rate_limit=0,
        extra_args=("--spool-dir", str(SPOOL_DIR), "--quiet", "--daily-quota", "0"),
        startup_timeout=120.0,
    )


def export_all(sandbox: SandboxProcess, nominal_mib: int) -> CsvFile:
    """Create the ``{}`` export and wait until its file is rendered (or found in the spool)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    created = requests.post(
        f"{sandbox.api_base}/activities/contact_exports", json={}, headers=headers, timeout=30
    )
    created.raise_for_status()
    self_href = created.json()["_links"]["self"]["href"]
    deadline = time.monotonic() + RENDER_TIMEOUT
    while time.monotonic() < deadline:
        activity = requests.get(f"{sandbox.url}{self_href}", headers=headers, timeout=30).json()
        if activity["state"] == "completed":
            results = activity["_links"]["results"]["href"]
            return _describe(sandbox, nominal_mib, activity["activity_id"], results)
        if activity["state"] not in ("initialized", "processing"):
            raise RuntimeError(f"sandbox export ended {activity['state']}: {activity}")
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"the {nominal_mib} MiB export was not rendered in {RENDER_TIMEOUT}s")


def _describe(sandbox: SandboxProcess, nominal_mib: int, activity_id: str, href: str) -> CsvFile:
    info = sandbox.export_info(href.rsplit("/", 1)[-1])
    return CsvFile(
        nominal_mib=nominal_mib,
        results_url=f"{sandbox.url}{href}",
        activity_id=activity_id,
        path=spool_file(info["sha256"]),
        size=int(info["bytes"]),
        sha256=str(info["sha256"]),
        rows=int(info["rows"]),
    )


def spool_file(sha256: str) -> Path:
    """The spooled CSV with this digest, found through the sidecars the sandbox writes."""
    for sidecar in SPOOL_DIR.glob("*.json"):
        try:
            if json.loads(sidecar.read_text()).get("sha256") == sha256:
                return sidecar.with_suffix(".csv")
        except (OSError, ValueError):
            continue
    raise FileNotFoundError(f"no spooled CSV with sha256 {sha256} in {SPOOL_DIR}")


if __name__ == "__main__":
    import sys

    for mib in [int(s) for s in sys.argv[1:]] or sorted(CONTACTS_FOR_MIB):
        started = time.monotonic()
        with corpus_sandbox(mib) as server:
            file = export_all(server, mib)
        print(f"{mib} MiB: {file.size} bytes, {file.rows} rows, {time.monotonic() - started:.0f}s")
