"""What each per-byte pass of the download costs, side by side in one process (goal 2's parts).

    .venv/bin/python -m bench.passes                 # the 512 MiB corpus file, 3 rounds
    .venv/bin/python -m bench.passes --size 64 --repeat 5

The worker's pool process reads every byte of an export once and runs these passes over it, each
on whole 16 MiB parts as the multipart path does: sha256 (the contract's digest), the CSV row
count (``workers.csvstats``), and the part's checksum, CRC32C (``crc32c``, the default) or CRC32
(``zlib``, ``S3_CHECKSUM_ALGORITHM=crc32``). The file is read into memory first, so no pass pays
for I/O; the process is set up as a pool process is (``workers.malloc``). The passes are
interleaved in each round and the median CPU-s/GiB (user + sys of this thread) is reported, with
each pass over sha256's, the floor of goal 2. Results go to bench/results/passes.md.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench import report
from bench.corpus import CONTACTS_FOR_MIB, corpus_sandbox, export_all
from workers import malloc
from workers.csvstats import CsvStats
from workers.s3.checksums import Checksum

#: Bytes per call: a part, as the multipart path measures it.
PART = 16 * 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results" / "passes.md"


def _sha256(parts: list[memoryview]) -> None:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)


def _rows(parts: list[memoryview]) -> None:
    stats = CsvStats()
    for part in parts:
        stats.feed(part)


def _checksum(checksum: Checksum) -> Callable[[list[memoryview]], None]:
    """The part checksum as the worker computes it (``workers.s3.checksums``)."""

    def run(parts: list[memoryview]) -> None:
        value = 0
        for part in parts:
            value = checksum.update(part, value)

    return run


PASSES: dict[str, Callable[[list[memoryview]], None]] = {
    "sha256 (hashlib)": _sha256,
    "CSV row count (workers.csvstats)": _rows,
    "CRC32 (zlib)": _checksum(Checksum("crc32")),
    "CRC32C (crc32c)": _checksum(Checksum("crc32c")),
}


def measure(data: bytes, repeat: int) -> dict[str, float]:
    """Median CPU-seconds per GiB of each pass over ``data``."""
    view = memoryview(data)
    parts = [view[i : i + PART] for i in range(0, len(data), PART)]
    seconds: dict[str, list[float]] = {name: [] for name in PASSES}
    for _ in range(repeat):
        for name, run in PASSES.items():
            started = time.thread_time()
            run(parts)
            seconds[name].append(time.thread_time() - started)
    gib = len(data) / 2**30
    return {name: statistics.median(each) / gib for name, each in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=512, choices=sorted(CONTACTS_FOR_MIB))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    malloc.pin_mmap_threshold()
    with corpus_sandbox(args.size) as sandbox:
        path = export_all(sandbox, args.size).path
    data = path.read_bytes()
    costs = measure(data, args.repeat)
    floor = costs["sha256 (hashlib)"]
    host = report.machine()
    lines = [
        f"`python -m bench.passes --size {args.size} --repeat {args.repeat}` — "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- machine: {host['nproc']} CPUs ({host['cpu_model']}), {host['memory_gib']} GiB, "
        f"{host['python']}",
        f"- data: the sandbox's {len(data) / 2**20:.0f} MiB corpus CSV, in memory, in 16 MiB "
        f"parts; median of {args.repeat} interleaved rounds",
        "",
        "| pass | CPU-s/GiB | vs sha256 |",
        "|---|---:|---:|",
        *(f"| {name} | {cost:.2f} | {cost / floor:.2f}x |" for name, cost in costs.items()),
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
