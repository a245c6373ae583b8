"""What an export's part buffers cost the writer, by how they are made, side by side in one run.

    .venv/bin/python -m bench.part_buffers                 # 0.1, 1, 16 and 64 MiB, rclone-tmpfs
    .venv/bin/python -m bench.part_buffers --sizes 1,64 --repeat 9 --store seaweedfs

Each export is the worker's ``MultipartWriter`` (16 MiB parts, one in flight, CRC32C, the
worker's own S3 client) writing the first bytes of the corpus CSV, held in memory, into a real
store (bench/stores.py). Only its part buffers differ, made three ways:

- ``bytearray``: ``bytearray(size)``, zero-filled at once (the writer before ``part_buffer``);
- ``part_buffer, small pages``: ``workers.malloc.part_buffer(size, huge_pages=False)``, its pages
  faulted in by the writes;
- ``part_buffer``: the same, with the kernel asked for huge pages (what the worker does).

What is timed is the CPU of the writing thread (user + sys, page faults included): making and
filling the buffers, each part's CRC32C, and the create and complete calls, the same for every
way; the parts' uploads run on the writer's own threads and are not counted. The process is set
up as a pool process is (``workers.malloc.pin_mmap_threshold``), so each buffer is a fresh
mapping, as each export's is in a worker. The ways are interleaved in each round; medians per
export are reported, with the buffers each export made and sha256 over the same bytes in memory
(goal 2's unit). Results go to bench/results/part-buffers.md, or part-buffers-STORE.md for
another ``--store``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench import report
from bench.corpus import corpus_sandbox, export_all
from bench.store_cost import worker_client
from bench.stores import BUCKET, STORES, RunningStore
from workers import malloc
from workers.s3.checksums import DEFAULT
from workers.s3.storage import MultipartWriter

#: The worker's default part size (S3_PART_SIZE_MIB).
PART = 16 * 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results"
#: The store a run without ``--store`` uses; its results go to part-buffers.md.
DEFAULT_STORE = "rclone-tmpfs"
#: Bytes written per timing at least, so that a small export's time is well above the clock's
#: resolution (the thread's CPU clock counts in microseconds, but a small export is noisy).
BYTES_PER_TIMING = 64 * 1024 * 1024
#: Exports per timing at most.
EXPORTS_PER_TIMING = 10
STORE_CHOICES = tuple(STORES)

WAYS: dict[str, Callable[[int], bytearray]] = {
    "bytearray": bytearray,
    "part_buffer, small pages": functools.partial(malloc.part_buffer, huge_pages=False),
    "part_buffer": malloc.part_buffer,
}


def export(
    store: RunningStore, data: memoryview, key: str, make: Callable[[int], bytearray]
) -> int:
    """One export of ``data`` through the worker's writer; returns the buffers it made."""
    with MultipartWriter(
        worker_client(store),
        BUCKET,
        key,
        part_size=PART,
        parts_in_flight=1,
        checksum=DEFAULT,
        allocate=make,
    ) as writer:
        writer.write(data)
        writer.complete()
    return writer.buffers_allocated


def measure(
    store: RunningStore, data: bytes, sizes: list[int], repeat: int
) -> dict[int, dict[str, float]]:
    """Median CPU milliseconds of the writing thread per export, by size and way; "sha256" the
    floor's over the same bytes, and "<way> buffers" the buffers an export made, most seen."""
    seconds: dict[int, dict[str, list[float]]] = {
        size: {way: [] for way in [*WAYS, "sha256"]} for size in sizes
    }
    buffers: dict[int, dict[str, int]] = {size: dict.fromkeys(WAYS, 0) for size in sizes}
    view = memoryview(data)
    for _ in range(repeat):
        for size in sizes:
            exports = max(1, min(EXPORTS_PER_TIMING, BYTES_PER_TIMING // size))
            for way, make in WAYS.items():
                started = time.thread_time()
                for _ in range(exports):
                    made = export(store, view[:size], f"part-buffers/{way}/{size}", make)
                    buffers[size][way] = max(buffers[size][way], made)
                seconds[size][way].append((time.thread_time() - started) / exports)
            started = time.thread_time()
            hashlib.sha256(view[:size]).digest()
            seconds[size]["sha256"].append(time.thread_time() - started)
    costs: dict[int, dict[str, float]] = {}
    for size, by_way in seconds.items():
        costs[size] = {way: statistics.median(each) * 1000 for way, each in by_way.items()}
        costs[size].update({f"{way} buffers": made for way, made in buffers[size].items()})
    return costs


def sizes_of(text: str) -> list[int]:
    """Export sizes in bytes from MiB, fractions allowed ("0.1,64")."""
    return [int(float(part) * 2**20) for part in text.split(",") if part.strip()]


def kernel_setting(name: str) -> str:
    path = Path("/sys/kernel/mm/transparent_hugepage") / name
    return path.read_text().strip() if path.exists() else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="0.1,1,16,64", help="MiB per export, at most 512")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--store", default=DEFAULT_STORE, choices=STORE_CHOICES)
    args = parser.parse_args()
    sizes = sizes_of(args.sizes)
    if not sizes or max(sizes) > 512 * 2**20 or min(sizes) <= 0:
        parser.error("sizes must lie in (0, 512] MiB")
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    assert malloc.pin_mmap_threshold(), "needs glibc, as a worker's pool process has"
    with corpus_sandbox(512) as sandbox, export_all(sandbox, 512).path.open("rb") as corpus:
        data = corpus.read(max(sizes))
    with STORES[args.store].running() as store:
        worker_client(store)  # made before anything is timed
        described = store.describe()
        costs = measure(store, data, sizes, args.repeat)
    host = report.machine()
    lines = [
        f"`python -m bench.part_buffers --sizes {args.sizes} --repeat {args.repeat} "
        f"--store {args.store}` — {started}",
        "",
        f"- machine: {host['nproc']} CPUs ({host['cpu_model']}), {host['memory_gib']} GiB, "
        f"{host['python']}; transparent huge pages: enabled `{kernel_setting('enabled')}`, "
        f"defrag `{kernel_setting('defrag')}`",
        f"- store `{args.store}`: {described}",
        f"- each export: the worker's MultipartWriter, {PART >> 20} MiB parts, one in flight, "
        "CRC32C, writing the first bytes of the sandbox's 512 MiB corpus CSV from memory; CPU "
        "ms of the writing thread per export (buffers, copies, CRC32C, create and complete), "
        f"median of {args.repeat} interleaved rounds; in brackets, the buffers it made",
        "",
        "| export | " + " | ".join(WAYS) + " | sha256 of the same bytes |",
        "|---:|" + "---:|" * (len(WAYS) + 1),
    ]
    for size, by_way in costs.items():
        base = by_way["bytearray"]
        cells = [
            f"{by_way[way]:.2f} ({by_way[way] / base:.2f}x; {by_way[f'{way} buffers']:.0f})"
            for way in WAYS
        ]
        lines.append(
            f"| {size / 2**20:.3g} MiB | " + " | ".join(cells) + f" | {by_way['sha256']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    name = "part-buffers" if args.store == DEFAULT_STORE else f"part-buffers-{args.store}"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
