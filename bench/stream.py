"""Streaming a sandbox CSV into S3, side by side on several stores: issue 17's goals 1, 2 and 4.

    make bench                                   # 64 MiB, 512 MiB and 2 GiB on all three stores
    .venv/bin/python bench/stream.py --sizes 64,512 --repeat 3 --stores rclone-tmpfs
    .venv/bin/python bench/stream.py --libraries     # also smart_open, upload_fileobj, naive
    .venv/bin/python bench/stream.py --sizes 512 --levers   # also this path's levers, in-process
    .venv/bin/python bench/stream.py --parallel 1,2,4,8 --stores seaweedfs   # goal 4 only

Every store (``--stores``, bench/stores.py) is started on its own data directory, and for each
size a sandbox serves one spooled file (``bench/.spool``, rendered once, served by sendfile from
page cache). Each round runs every method once, interleaved (each round one method further on),
into the same store:

- ``curl``: curl PUT of the spooled file, the PUT alone: what the store takes (the limit);
- ``curl_bytes``: the same PUT with the body declared ``application/octet-stream``, which
  SeaweedFS charges less for than a body it sniffs as text (bench/tools.py): a second limit;
- ``worker``: this project's export in a real celery worker (``-c 1``), timed from its results
  GET (the sandbox's request log) to its published result, its pool process's RSS and CPU
  measured (bench/worker_run.py);
- ``copyurl`` and ``aws``: what a user would reach for instead, ``rclone copyurl`` and
  ``curl URL | aws s3 cp -``, timed like the worker from their results GET to their exit
  (bench/tools.py);
- ``sha256_floor``: hashlib.sha256 over the spooled file in a fresh process, goal 2's floor
  (bench/floor.py);
- with ``--libraries``: smart_open, boto3 upload_fileobj and a naive put_object, each in a child
  process (bench/methods.py); with ``--levers``, variants of this project's path in-process.

Work a store defers to an object's first read (``rclone serve s3`` computes its MD5 on the first
HEAD) is timed apart: the HEAD after curl's, copyurl's and aws's upload, and the worker's seal
task, which runs after its result. Figures are medians of ``--repeat`` rounds and ratios medians
of per-round ratios (every trial is in the JSON): the machine is shared and noisy.

``--parallel 1,2,4,8`` measures goal 4 instead: for each N a worker started with ``-c N`` runs N
exports of ``--parallel-size`` MiB at once, one per account (``--one-account``: all for one,
whose POSTs the worker spaces ~1 s apart), against N curl PUTs at once into the same store.

Results go to ``bench/results/stream.{md,json,png}``; ``stream-parallel.*`` with ``--parallel``,
``stream-levers.*`` with ``--levers``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report, tools
from bench.corpus import CONTACTS_FOR_MIB, CsvFile, corpus_sandbox, export_all
from bench.floor import sha256_floor
from bench.sampling import RssSampler, StoreLoad
from bench.stores import BUCKET, DEFAULT_STORES, STORES, RunningStore
from bench.worker_run import WorkerBench, results_get_started
from sandbox.testing import SandboxProcess

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The methods of every round, in the order they run.
METHODS = ("curl", "curl_bytes", "worker", "copyurl", "aws")
#: The libraries' methods (``--libraries``), run in a child process each (bench/methods.py).
LIBRARIES = ("smart_open", "upload_fileobj", "naive")
#: What the source is, for the report.
SOURCE = (
    "the sandbox (sandbox/, on loopback) serving one spooled CSV per size from bench/.spool "
    "by sendfile, from page cache; Bearer-token auth on the results link"
)
#: In-process variants of this project's path, each an environment override (``--levers``).
LEVERS: dict[str, tuple[str, dict[str, str]]] = {
    "iter_content + copy (old reader)": ("pipeline-iter", {}),
    "multipart, readinto in place (16 MiB x 1, the default)": ("pipeline", {}),
    "8 MiB x 1": ("pipeline", {"S3_PART_SIZE_MIB": "8"}),
    "32 MiB x 1": ("pipeline", {"S3_PART_SIZE_MIB": "32"}),
    "8 MiB x 2 (the earlier default)": (
        "pipeline",
        {"S3_PART_SIZE_MIB": "8", "S3_PARTS_IN_FLIGHT": "2"},
    ),
    "16 MiB x 2": ("pipeline", {"S3_PARTS_IN_FLIGHT": "2"}),
    "16 MiB x 3": ("pipeline", {"S3_PARTS_IN_FLIGHT": "3"}),
    "16 MiB x 6": ("pipeline", {"S3_PARTS_IN_FLIGHT": "6"}),
    "no checksum (when_required), signed": (
        "pipeline",
        {"S3_CHECKSUM": "when_required"},
    ),
    "CRC32C + signed payload": ("pipeline", {"S3_PAYLOAD_SIGNING": "always"}),
    "CRC32C + Content-MD5": ("pipeline", {"S3_CONTENT_MD5": "true"}),
    "CRC32 instead of CRC32C": ("pipeline", {"S3_CHECKSUM_ALGORITHM": "crc32"}),
    "one streaming PUT, CRC32C trailer (workers.s3.streamput)": ("single-put", {}),
    "one streaming PUT, read and measured ahead on a thread": ("single-put-ahead", {}),
}

Trial = dict[str, Any]


class Bench:
    """One store, one size: the methods of a round, each checked and its object deleted."""

    def __init__(self, store: RunningStore, sandbox: SandboxProcess, file: CsvFile) -> None:
        self.store = store
        self.sandbox = sandbox
        self.file = file
        self.client = store.server.client()

    def command(self, method: str, key: str) -> Trial:
        """A command-line method (bench/tools.py), then the first HEAD of what it stored."""
        stages = tools.COMMANDS[method](self.store.server, self.file, BUCKET, key)
        ran = tools.run(stages, self.store.server.env())
        trial: Trial = {
            "seconds": ran.seconds,
            "peak_rss": ran.peak_rss,
            "cpu_seconds": ran.cpu_seconds,
        }
        if method not in tools.PUTS:  # a download too: timed from its results GET, as the worker
            ended = ran.started_at + ran.seconds
            got = results_get_started(self.sandbox, self.file.activity_id, after=ran.started_at)
            trial.update(seconds=ended - got, command_seconds=ran.seconds)
        started = time.monotonic()
        # rclone hashes a new file (MD5, its ETag) on its first stat, not as it is written.
        self.client.head_object(Bucket=BUCKET, Key=key)
        trial["first_head_seconds"] = time.monotonic() - started
        return trial

    def child(self, method: str, key: str, env: dict[str, str]) -> Trial:
        command = [sys.executable, "-m", "bench.methods", method, self.file.results_url]
        command += [BUCKET, key]
        with RssSampler.popen(
            command, env={**self.store.server.env(), **env}, capture=True
        ) as sampler:
            pass
        result: Trial = json.loads(sampler.stdout.strip().splitlines()[-1])
        return result

    def verify(self, key: str, trial: Trial) -> None:
        """The object is the file (size; sha256 and rows where the method measured them); then
        it is deleted."""
        file = self.file
        head = self.client.head_object(Bucket=BUCKET, Key=key)
        if head["ContentLength"] != file.size:
            raise RuntimeError(f"{key}: {head['ContentLength']} bytes stored of {file.size}")
        if "sha256" in trial and trial["sha256"] != file.sha256:
            raise RuntimeError(f"{key}: sha256 {trial['sha256']} is not {file.sha256}")
        if "rows" in trial and trial["rows"] != file.rows:
            raise RuntimeError(f"{key}: {trial['rows']} rows counted of {file.rows}")
        self.client.delete_object(Bucket=BUCKET, Key=key)


def run_size(
    store: RunningStore, mib: int, repeat: int, methods: tuple[str, ...], levers: bool
) -> list[Trial]:
    trials: list[Trial] = []
    with corpus_sandbox(mib) as sandbox:
        file = export_all(sandbox, mib)
        bench = Bench(store, sandbox, file)
        print(f"== {store.name}, {mib} MiB: {file.size} bytes, {file.rows} rows", flush=True)
        with WorkerBench(store.server, sandbox, BUCKET) as worker:
            trials += warm_up(bench, worker, f"warmup-{mib}")
            for round_ in range(repeat):
                for method in rotated(methods, round_):
                    trials += with_derived(one_trial(bench, worker, method, round_))
                trials.append(floor_trial(bench, round_))
                if levers:
                    for name, (method, env) in LEVERS.items():
                        trials.append(one_trial(bench, worker, method, round_, name, env))
                store.reclaim()
    for trial in trials:
        trial.setdefault("store", store.name)
    return trials


def rotated(methods: tuple[str, ...], round_: int) -> tuple[str, ...]:
    """The round's order: each round starts one method further on, so none always runs first."""
    turn = round_ % len(methods)
    return methods[turn:] + methods[:turn]


def warm_up(bench: Bench, worker: WorkerBench, key: str) -> list[Trial]:
    """One export per pool process before any is timed (see bench/worker_run.py), kept apart."""
    first = worker.warm_up(key)
    for export in first:
        bench.verify(export["key"], {})
        export.update(kind="warmup", mib=bench.file.nominal_mib, size=bench.file.size)
        export["mib_per_s"] = bench.file.size / export["seconds"] / 2**20
        print(
            f"  {'worker, warm-up (not a trial)':40} {export['mib_per_s']:7.1f} MiB/s  "
            f"stored in {export['stored_as']}"
            + (", sealed before its result" if export.get("sealed_before_result") else "")
        )
    return first


def with_derived(trial: Trial) -> list[Trial]:
    """The trial and the rows computed from its own timings (the deferred work apart)."""
    if "error" in trial:
        return [trial]
    if trial["method"] == "worker":
        return [
            trial,
            derived(trial, "worker_stream", trial["stream_seconds"], "  of which the stream"),
            derived(
                trial, "worker_sealed", trial["seconds"] + trial["seal_seconds"], "  then its seal"
            ),
        ]
    if trial["method"] == "curl":
        seconds = trial["seconds"] + trial["first_head_seconds"]
        return [trial, derived(trial, "curl_head", seconds, "  then its first HEAD")]
    return [trial]


def derived(trial: Trial, method: str, seconds: float, label: str) -> Trial:
    """A row computed from another trial's own timings, printed as it is made."""
    print(f"  {label:40} {trial['size'] / seconds / 2**20:7.1f} MiB/s")
    return {
        **trial,
        "method": method,
        "seconds": seconds,
        "mib_per_s": trial["size"] / seconds / 2**20,
    }


def one_trial(
    bench: Bench,
    worker: WorkerBench,
    method: str,
    round_: int,
    lever: str | None = None,
    env: dict[str, str] | None = None,
) -> Trial:
    file = bench.file
    key = f"{method}-{file.nominal_mib}-{round_}.csv"
    subprocess.run(["sync"], check=False)  # start each trial with no write-back pending
    label = lever or method
    base = {"kind": "transfer", "method": method, "lever": lever, "mib": file.nominal_mib}
    base["round"] = round_
    try:
        with StoreLoad(bench.store.server.pid) as load:
            if method == "worker":
                trial = worker.export(file, key)
            elif method in tools.COMMANDS:
                trial = bench.command(method, key)
            else:
                trial = bench.child(method, key, env or {})
        # The worker's span is its download (its create and polls are mostly idle); a
        # command's, all of it.
        store_cpu, busy = load.since(trial.get("download_logged_at"))
        trial.update(store_cpu_seconds=store_cpu, busy_cores=busy)
        bench.verify(key, trial)
    except Exception as error:  # one failed trial is reported, not the end of the run
        print(f"  {label:40} FAILED: {type(error).__name__}: {error}")
        return {**base, "error": f"{type(error).__name__}: {error}"}
    trial.update(base, size=file.size, mib_per_s=file.size / trial["seconds"] / 2**20)
    extra = f"  peak RSS {trial['peak_rss'] >> 20} MiB"
    if "cpu_seconds" in trial:
        extra += f"  CPU {trial['cpu_seconds'] / (file.size / 2**30):.2f} s/GiB"
    if trial["store_cpu_seconds"] is not None:
        extra += f"  store CPU {trial['store_cpu_seconds'] / (file.size / 2**30):.2f} s/GiB"
    extra += f"  machine {trial['busy_cores']:.2f} cores busy"
    print(f"  {label:40} {trial['mib_per_s']:7.1f} MiB/s{extra}")
    return trial


def floor_trial(bench: Bench, round_: int) -> Trial:
    """Goal 2's floor in this round: sha256 over the same file, in a fresh process."""
    file = bench.file
    base = {"kind": "floor", "method": "sha256_floor", "mib": file.nominal_mib, "round": round_}
    try:
        floor = sha256_floor(file.path)
        if floor["sha256"] != file.sha256:
            raise RuntimeError(f"sha256 of {file.path} is {floor['sha256']}, not {file.sha256}")
    except Exception as error:  # reported in the table, not the end of the run
        print(f"  {'sha256 floor':40} FAILED: {error}")
        return {**base, "error": str(error)}
    per_gib = floor["cpu_seconds"] / (floor["bytes"] / 2**30)
    print(f"  {'sha256 floor (goal 2)':40} CPU {per_gib:.2f} s/GiB")
    return {**base, **floor}


def run_parallel(
    store: RunningStore, counts: list[int], mib: int, repeat: int, one_account: bool
) -> list[Trial]:
    """Goal 4: for each N, N worker exports at once (``-c N``) against N curl PUTs at once
    (plain and declared as bytes); the exports of one account each unless ``one_account`` (see
    bench/worker_run.py)."""
    trials: list[Trial] = []
    with corpus_sandbox(mib) as sandbox:
        file = export_all(sandbox, mib)
        bench = Bench(store, sandbox, file)
        for n in counts:
            print(f"== {store.name}, {n} x {mib} MiB at once", flush=True)
            accounts = 1 if one_account else n
            with WorkerBench(store.server, sandbox, BUCKET, n, accounts) as worker:
                trials += warm_up(bench, worker, f"warmup-{n}x{mib}")
                for round_ in range(repeat):
                    base = {"kind": "parallel", "n": n, "mib": mib, "round": round_}
                    base["accounts"] = accounts
                    for method in rotated((*tools.PUTS, "worker"), round_):
                        trial = parallel_trial(bench, worker, n, round_, method)
                        trials.append({**base, **trial})
                    store.reclaim()
    for trial in trials:
        trial.setdefault("store", store.name)
    return trials


def parallel_trial(bench: Bench, worker: WorkerBench, n: int, round_: int, method: str) -> Trial:
    keys = [f"{method}-{n}x{bench.file.nominal_mib}-{round_}-{i}.csv" for i in range(n)]
    subprocess.run(["sync"], check=False)
    try:
        if method == "worker":
            trial = worker.export_many(keys)
            for export in trial["exports"]:
                bench.verify(export["key"], export)
        else:
            trial = curl_many(bench, keys, method)
            for key in keys:
                bench.verify(key, {})
    except Exception as error:  # one failed trial is reported, not the end of the run
        print(f"  {method} x {n:<36} FAILED: {type(error).__name__}: {error}")
        return {"method": method, "error": f"{type(error).__name__}: {error}"}
    total = n * bench.file.size
    trial.update(method=method, size=bench.file.size, bytes=total)
    trial["mib_per_s"] = total / trial["seconds"] / 2**20
    print(f"  {f'{method} x {n}':40} {trial['mib_per_s']:7.1f} MiB/s aggregate")
    return trial


def curl_many(bench: Bench, keys: list[str], method: str) -> Trial:
    """curl PUTs (``method``, one of ``tools.PUTS``) of the file at once, one per key: wall
    seconds from the first start to the last exit."""
    server = bench.store.server

    def put(key: str) -> tools.Ran:
        return tools.run(tools.COMMANDS[method](server, bench.file, BUCKET, key), server.env())

    with ThreadPoolExecutor(len(keys)) as pool:
        runs = list(pool.map(put, keys))
    started = min(r.started_at for r in runs)
    ended = max(r.started_at + r.seconds for r in runs)
    return {"seconds": ended - started, "each_seconds": [r.seconds for r in runs]}


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="64,512,2048", help="MiB, from 64, 512, 2048")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument(
        "--stores",
        default=",".join(DEFAULT_STORES),
        help=f"comma-separated, from {', '.join(STORES)}",
    )
    parser.add_argument(
        "--libraries", action="store_true", help="also smart_open, upload_fileobj and naive"
    )
    parser.add_argument("--levers", action="store_true", help="also time this path's levers")
    parser.add_argument("--parallel", default="", help="goal 4 only: exports at once, e.g. 1,2,4,8")
    parser.add_argument(
        "--parallel-size", type=int, default=512, help="MiB per export with --parallel"
    )
    parser.add_argument(
        "--one-account",
        action="store_true",
        help="with --parallel: all exports for one account (its POSTs go one at a time)",
    )
    args = parser.parse_args()
    args.sizes = numbers(args.sizes)
    args.parallel = numbers(args.parallel)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = {*args.sizes, args.parallel_size} - set(CONTACTS_FOR_MIB)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}; choose from {sorted(CONTACTS_FOR_MIB)}")
    if set(args.stores) - set(STORES) or not args.stores:
        parser.error(f"unknown stores in {args.stores}; choose from {', '.join(STORES)}")
    return args


def main() -> None:
    args = parse_args()
    methods = METHODS + (LIBRARIES if args.libraries else ())
    context: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": report.machine(),
        "source": SOURCE,
        "stores": {},
        "notes": [f"tools: {tools.versions()}", report.worker_settings_note()],
    }
    trials: list[Trial] = []
    for name in args.stores:
        with STORES[name].running() as store:
            context["stores"][name] = store.describe()
            print(f"== store {name}: {context['stores'][name]}", flush=True)
            if args.parallel:
                trials += run_parallel(
                    store, args.parallel, args.parallel_size, args.repeat, args.one_account
                )
            else:
                for mib in args.sizes:
                    trials += run_size(store, mib, args.repeat, methods, args.levers)
    context["footnotes"] = warm_up_note(trials)
    RESULTS_DIR.mkdir(exist_ok=True)
    command = " ".join(["bench/stream.py", *sys.argv[1:]])
    # Kept apart, so a lever or parallel run never replaces the tables of goals 1 and 2.
    name = "stream-parallel" if args.parallel else "stream-levers" if args.levers else "stream"
    print(report.write(trials, RESULTS_DIR, command=command, context=context, name=name))


def warm_up_note(trials: list[Trial]) -> list[str]:
    """The warm-up exports, which no table counts, in one line each store and size."""
    warm = [t for t in trials if t.get("kind") == "warmup"]
    if not warm:
        return []
    parts = []
    for t in warm:
        how = t["stored_as"] + (
            ", sealed before its result" if t.get("sealed_before_result") else ""
        )
        parts.append(f"{t['store']} {t['mib']} MiB: {t['mib_per_s']:.0f} MiB/s ({how})")
    return [
        "Not in any table: each worker's warm-up, one export per pool process before the timed "
        "ones, which learns how the store keeps a streamed PUT (bench/worker_run.py): "
        + "; ".join(parts)
        + "."
    ]


if __name__ == "__main__":
    main()
