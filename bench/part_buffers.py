"""What an export's part buffers cost to make and fill, by how they are made, side by side.

    .venv/bin/python -m bench.part_buffers                    # 0.1, 1, 16 and 64 MiB exports
    .venv/bin/python -m bench.part_buffers --sizes 1,64 --repeat 9

Each export gets its part buffers as ``MultipartWriter`` does with one part in flight (at most
two 16 MiB buffers, made on first use, reused, the last part shrunk in place, all dropped at the
end) and fills them from the corpus CSV with ``readinto``, one kernel copy from the page cache,
as the download's is from the socket. The buffers are made three ways:

- ``bytearray``: ``bytearray(size)``, zero-filled at once (the writer before ``part_buffer``);
- ``part_buffer, small pages``: ``workers.malloc.part_buffer(size, huge_pages=False)``, its pages
  faulted in by the writes;
- ``part_buffer``: the same, with the kernel asked for huge pages (what the worker does).

The process is set up as a pool process is (``workers.malloc.pin_mmap_threshold``), so each
buffer is a fresh mapping, as each export's is in a worker. The ways are interleaved in each
round; the median CPU time of this thread per export (user + sys, page faults included) is
reported, and beside it sha256 over the same bytes, goal 2's floor. bench/results/part-buffers.md.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bench import report
from bench.corpus import corpus_sandbox, export_all
from workers import malloc

#: The worker's default part size (S3_PART_SIZE_MB).
PART = 16 * 1024 * 1024
#: Buffers an export uses at most with one part in flight.
BUFFERS = 2
RESULTS = Path(__file__).resolve().parent / "results" / "part-buffers.md"
#: Exports per timing, so that a small one's time is well above the clock's resolution.
EXPORTS_PER_TIMING = 10

WAYS: dict[str, Callable[[int], bytearray]] = {
    "bytearray": bytearray,
    "part_buffer, small pages": lambda size: malloc.part_buffer(size, huge_pages=False),
    "part_buffer": malloc.part_buffer,
}


def export(source: BinaryIO, size: int, make: Callable[[int], bytearray]) -> None:
    """One export's buffers, made by ``make`` and filled with ``size`` bytes of ``source``."""
    source.seek(0)
    buffers: list[bytearray] = []
    left, number = size, 0
    while left:
        if len(buffers) < BUFFERS:
            buffers.append(make(PART))
        buffer = buffers[number % BUFFERS]
        count = min(left, PART)
        with memoryview(buffer) as view:
            filled = source.readinto(view[:count])
        assert filled == count
        if count < PART:
            del buffer[count:]  # the last part, shrunk in place
        left -= count
        number += 1


def timed(run: Callable[[], object]) -> float:
    """CPU seconds of this thread per export."""
    started = time.thread_time()
    for _ in range(EXPORTS_PER_TIMING):
        run()
    return (time.thread_time() - started) / EXPORTS_PER_TIMING


def measure(path: Path, sizes: list[int], repeat: int) -> dict[int, dict[str, float]]:
    """Median CPU milliseconds per export, by size and way; "sha256" the floor's."""
    with path.open("rb", buffering=0) as source:
        seconds = {size: {way: [] for way in [*WAYS, "sha256"]} for size in sizes}
        for _ in range(repeat):
            for size in sizes:
                for way, make in WAYS.items():
                    seconds[size][way].append(timed(functools.partial(export, source, size, make)))
                source.seek(0)
                hashed = source.read(size)
                seconds[size]["sha256"].append(timed(functools.partial(hashlib.sha256, hashed)))
    return {
        size: {way: statistics.median(each) * 1000 for way, each in by_way.items()}
        for size, by_way in seconds.items()
    }


def sizes_of(text: str) -> list[int]:
    """Export sizes in bytes from MiB, fractions allowed ("0.1,64")."""
    return [int(float(part) * 2**20) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="0.1,1,16,64", help="MiB per export, at most 512")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sizes = sizes_of(args.sizes)
    if not sizes or max(sizes) > 512 * 2**20 or min(sizes) <= 0:
        parser.error("sizes must lie in (0, 512] MiB")
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    assert malloc.pin_mmap_threshold(), "needs glibc, as a worker's pool process has"
    with corpus_sandbox(512) as sandbox:
        path = export_all(sandbox, 512).path
    costs = measure(path, sizes, args.repeat)
    host = report.machine()
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    lines = [
        f"`python -m bench.part_buffers --sizes {args.sizes} --repeat {args.repeat}` — {started}",
        "",
        f"- machine: {host['nproc']} CPUs ({host['cpu_model']}), {host['memory_gib']} GiB, "
        f"{host['python']}; transparent huge pages: "
        f"{thp.read_text().strip() if thp.exists() else 'none'}",
        f"- source: the sandbox's 512 MiB corpus CSV, read from the page cache into {PART >> 20} "
        f"MiB parts, at most {BUFFERS} buffers per export; CPU ms of this thread per export, "
        f"median of {args.repeat} interleaved rounds of {EXPORTS_PER_TIMING} exports each",
        "",
        "| export | " + " | ".join(WAYS) + " | sha256 of the same bytes |",
        "|---:|" + "---:|" * (len(WAYS) + 1),
    ]
    for size, by_way in costs.items():
        base = by_way["bytearray"]
        cells = [f"{by_way[way]:.2f} ({by_way[way] / base:.2f}x)" for way in WAYS]
        lines.append(
            f"| {size / 2**20:.3g} MiB | " + " | ".join(cells) + f" | {by_way['sha256']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
