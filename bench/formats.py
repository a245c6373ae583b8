"""Formats run (not in CI): the worker's conversion of a CSV against the same library converting
the same file on its own, single-threaded, side by side in one run.

    .venv/bin/python -m bench.formats              # 64 and 512 MiB
    .venv/bin/python -m bench.formats --sizes 64 512 2048
    .venv/bin/python -m bench.formats --formats parquet --repeat 3   # medians of 3 rounds

The CSV is a sandbox export with every column (``bench.corpus``, rendered once into
``bench/.spool``). Each measurement runs in a fresh process, so its RSS growth is its own: from
after its imports to its peak (``ru_maxrss``). Both sides read the file from the page cache in
1 MiB chunks and discard what they produce; S3 is not involved (``bench/stream.py`` measures the
upload), so the figures are the conversion's own cost.

- worker: ``workers.export.formats.Converted`` over the file's chunks, as the download step runs
  it; for ``csv``, the worker's measuring pass (sha256 and CSV row count) over the bytes.
- baseline: ``csv``: sha256 alone; ``csv.gz``: ``zlib`` gzip at the worker's level over the
  file; ``csv.zst``: ``zstandard`` at the worker's level; ``parquet``: ``pyarrow.csv.open_csv``
  with ``use_threads=False`` streaming into a ``ParquetWriter`` (pyarrow's own parsing and type
  inference, no type mapping), and beside it the same with Arrow's threads (its default);
  ``jsonl.gz``: no library writes it from CSV, so none.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import resource
import statistics
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.corpus import corpus_sandbox, export_all

CHUNK = 1024 * 1024
FORMAT_NAMES = ("csv", "csv.gz", "csv.zst", "jsonl.gz", "parquet")


def chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(CHUNK):
            yield block


def worker_side(fmt: str, path: Path) -> None:
    from workers.export.formats import FORMATS, Converted
    from workers.transfer import Measurement

    if fmt == "csv":
        measurement = Measurement()
        for block in chunks(path):
            measurement.feed(block)
        return
    digest = hashlib.sha256()
    for out in Converted(FORMATS[fmt], chunks(path)):
        digest.update(out)


def baseline(fmt: str, path: Path, *, threads: bool = False) -> None:
    if fmt == "csv":
        digest = hashlib.sha256()
        for block in chunks(path):
            digest.update(block)
    elif fmt == "csv.gz":
        from workers.export.formats import GZIP_LEVEL

        z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        for block in chunks(path):
            z.compress(block)
        z.flush()
    elif fmt == "csv.zst":
        import zstandard

        from workers.export.formats import ZSTD_LEVEL

        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
        for block in chunks(path):
            compressor.compress(block)
        compressor.flush()
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        # The notes hold quoted line breaks, as Constant Contact's may. Single-threaded, as the
        # issue defines the baseline, unless ``threads``: Arrow's reader then parses ahead on
        # its thread pool (its default), which the report shows beside it.
        reader = pcsv.open_csv(
            str(path),
            read_options=pcsv.ReadOptions(use_threads=threads),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
        )
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, reader.schema, compression="snappy") as writer:
            for batch in reader:
                writer.write_batch(batch)


def threaded_baseline(fmt: str, path: Path) -> None:
    baseline(fmt, path, threads=True)


def measured(target: Callable[[str, Path], None], fmt: str, path: Path, out: Any) -> None:
    if target is worker_side:  # as every worker pool process is set up (workers.lifecycle)
        from workers import malloc

        malloc.pin_mmap_threshold()
        malloc.return_arrow_memory()
    import pyarrow  # noqa: F401 - imports before the RSS baseline, on both sides
    import zstandard  # noqa: F401

    import workers.export.formats  # noqa: F401

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    cpu = time.process_time()
    target(fmt, path)
    out.send(
        (
            time.perf_counter() - started,
            time.process_time() - cpu,
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
        )
    )


def run(target: Callable[[str, Path], None], fmt: str, path: Path) -> tuple[float, float, float]:
    """Seconds, CPU seconds and RSS growth (MiB) of ``target`` in a process of its own."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=measured, args=(target, fmt, path, send))
    process.start()
    result: tuple[float, float, float] = receive.recv()
    process.join()
    return result


def round_of(fmt: str, path: Path) -> dict[str, tuple[float, float, float]]:
    """One round of a format: the worker, then each baseline it has, back to back."""
    trials = {"worker": run(worker_side, fmt, path)}
    if fmt != "jsonl.gz":
        trials["baseline"] = run(baseline, fmt, path)
    if fmt == "parquet":
        trials["threaded"] = run(threaded_baseline, fmt, path)
    return trials


def row(mib: float, fmt: str, rounds: list[dict[str, tuple[float, float, float]]]) -> str:
    """Medians over the rounds: MiB/s of each side, and of each round's ratio."""

    def rate(side: str) -> str:
        if side not in rounds[0]:
            return "n/a"
        return f"{mib / statistics.median(r[side][0] for r in rounds):.0f}"

    def ratio(side: str) -> str:
        if side not in rounds[0]:
            return "n/a"
        each = [r[side][0] / r["worker"][0] for r in rounds]
        spread = f" ({min(each):.0%}-{max(each):.0%})" if len(each) > 1 else ""
        return f"{statistics.median(each):.0%}{spread}"

    cpu = statistics.median(r["worker"][1] for r in rounds)
    rss = max(r["worker"][2] for r in rounds)
    return (
        f"| {mib:.0f} MiB | {fmt} | {rate('worker')} | {rate('baseline')} | {ratio('baseline')} "
        f"| {cpu:.1f} | {rss:.0f} | {rate('threaded')} | {ratio('threaded')} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--formats", nargs="+", default=list(FORMAT_NAMES), choices=FORMAT_NAMES)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds, the formats interleaved; medians reported"
    )
    args = parser.parse_args()
    print(
        f"{args.repeat} round(s); MiB/s and CPU are medians, ratios the median of each round's "
        "(lowest-highest), RSS growth the most seen\n\n"
        "| CSV | format | worker MiB/s | baseline MiB/s | worker / baseline "
        "| worker CPU s | worker RSS growth MiB | baseline with Arrow's threads MiB/s "
        "| worker / it |\n|---|---|---|---|---|---|---|---|---|"
    )
    for size in args.sizes:
        with corpus_sandbox(size) as sandbox:
            csv_file = export_all(sandbox, size)
        mib = csv_file.size / 2**20
        rounds: dict[str, list[dict[str, tuple[float, float, float]]]] = {
            fmt: [] for fmt in args.formats
        }
        for _ in range(args.repeat):
            for fmt in args.formats:
                rounds[fmt].append(round_of(fmt, csv_file.path))
        for fmt in args.formats:
            print(row(mib, fmt, rounds[fmt]), flush=True)


if __name__ == "__main__":
    main()
