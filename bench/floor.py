"""The CPU floor of goal 2: hashlib.sha256 over a file's bytes, in a process of its own.

Every byte the worker streams is at least read from a socket and hashed (its sha256 is part of
the result), so a process that only reads the same bytes and hashes them bounds from below what
the worker's pool process can spend. ``python -m bench.floor FILE`` reads FILE in 16 MiB chunks
(from page cache: the spooled CSV was just served) into one reused buffer, hashes each chunk, and
prints one JSON line: the CPU seconds of the loop alone (user + sys, ``getrusage``), not of the
interpreter's start, with the bytes and the digest, which the benchmark checks.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Bytes read and hashed per call: whole parts, as the worker hashes them.
CHUNK = 16 * 1024 * 1024


def hash_file(path: Path) -> dict[str, Any]:
    buffer = bytearray(CHUNK)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb", buffering=0) as source, memoryview(buffer) as view:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        while count := source.readinto(view):
            digest.update(view[:count])
            size += count
        seconds = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return {
        "seconds": seconds,
        "cpu_seconds": user + system,
        "user_seconds": user,
        "sys_seconds": system,
        "bytes": size,
        "sha256": digest.hexdigest(),
    }


def sha256_floor(path: Path) -> dict[str, Any]:
    """``hash_file`` run in a fresh interpreter, as the benchmark calls it."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.floor", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(json.dumps(hash_file(Path(sys.argv[1]))))
