"""Streaming a sandbox CSV into S3, side by side: the limit, three libraries, and this worker.

    make bench                                  # 64 MiB, 512 MiB and 2 GiB
    .venv/bin/python bench/stream.py --sizes 64,512 --repeat 3
    .venv/bin/python bench/stream.py --sizes 512 --levers   # also this path's levers, in-process

For each size every method runs once per round, the methods interleaved, against one
``rclone serve s3`` and one sandbox serving a spooled file (``bench/.spool``, rendered once):

(a) curl PUT of the same bytes from the spool file: what the S3 server can take (the limit);
(b) smart_open's S3 writer fed from ``iter_content``; (c) boto3 ``upload_fileobj`` on the
response stream; (d) the whole body read, then ``put_object``; (e) this project's
``download_csv``, run by a real celery worker: timed from the results GET (the sandbox's request
log) to the task's result, its pool child's RSS sampled meanwhile.

The S3 server keeps its files on tmpfs (``/dev/shm``) when there is one, so what is measured is
streaming, not the virtual disk's write-back. The machine is shared and noisy: each figure is the
best of ``--repeat`` rounds (every trial is in the JSON), and ratios compare methods of one run.
Results go to ``bench/results/stream.{md,json,png}``, or ``stream-levers.*`` with ``--levers``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from bench.corpus import CONTACTS_FOR_MIB, CsvFile, corpus_sandbox, export_all
from bench.sampling import RssSampler
from bench.worker_run import WorkerBench
from devstack.s3server import ACCESS_KEY, SECRET_KEY, RcloneS3

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BUCKET = "bench"
#: The methods of every run, in the order they run in a round.
METHODS = ("curl", "smart_open", "upload_fileobj", "naive", "worker")
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
    "no CRC32 (when_required), signed": (
        "pipeline",
        {"S3_CHECKSUM": "when_required"},
    ),
    "CRC32 + signed payload": ("pipeline", {"S3_PAYLOAD_SIGNING": "always"}),
    "CRC32 + Content-MD5": ("pipeline", {"S3_CONTENT_MD5": "true"}),
    "one streaming PUT, CRC32 trailer (workers.s3.streamput)": ("single-put", {}),
}


def s3_data_dir() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > 8 << 30 else None
    return Path(tempfile.mkdtemp(prefix="bench-s3-", dir=base))


class Bench:
    def __init__(self, s3: RcloneS3, repeat: int) -> None:
        self.s3 = s3
        self.repeat = repeat
        self.client = s3.client()

    def curl(self, file: CsvFile, key: str) -> dict[str, Any]:
        command = [
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            f"{ACCESS_KEY}:{SECRET_KEY}",
            "-T",
            str(file.path),
            f"{self.s3.endpoint_url}/{BUCKET}/{key}",
            "-o",
            "/dev/null",
        ]
        started = time.monotonic()
        with RssSampler.popen(command) as sampler:
            pass
        seconds = time.monotonic() - started
        # rclone hashes a new file (MD5, its ETag) on its first stat, not as it is written.
        self.client.head_object(Bucket=BUCKET, Key=key)
        first_head = time.monotonic() - started - seconds
        return {"seconds": seconds, "peak_rss": sampler.peak, "first_head_seconds": first_head}

    def child(self, method: str, file: CsvFile, key: str, env: dict[str, str]) -> dict[str, Any]:
        command = [sys.executable, "-m", "bench.methods", method, file.results_url, BUCKET, key]
        with RssSampler.popen(command, env={**self.s3.env(), **env}, capture=True) as sampler:
            pass
        result: dict[str, Any] = json.loads(sampler.stdout.strip().splitlines()[-1])
        return result

    def verify(self, file: CsvFile, key: str, trial: dict[str, Any]) -> None:
        head = self.client.head_object(Bucket=BUCKET, Key=key)
        if head["ContentLength"] != file.size:
            raise RuntimeError(f"{key}: {head['ContentLength']} bytes stored of {file.size}")
        if "sha256" in trial and trial["sha256"] != file.sha256:
            raise RuntimeError(f"{key}: sha256 {trial['sha256']} is not {file.sha256}")
        if "rows" in trial and trial["rows"] != file.rows:
            raise RuntimeError(f"{key}: {trial['rows']} rows counted of {file.rows}")
        self.client.delete_object(Bucket=BUCKET, Key=key)


def run_size(bench: Bench, mib: int, levers: bool) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = []
    with corpus_sandbox(mib) as sandbox:
        file = export_all(sandbox, mib)
        print(f"== {mib} MiB: {file.size} bytes, {file.rows} rows", flush=True)
        with WorkerBench(bench.s3, sandbox, BUCKET) as worker:
            for round_ in range(bench.repeat):
                for method in METHODS:
                    trial = one_trial(bench, worker, file, method, round_)
                    trials.append(trial)
                    if method == "worker" and "error" not in trial:
                        trials.append(stream_part(trial))
                        trials.append(with_seal(trial))
                    if method == "curl" and "error" not in trial:
                        trials.append(with_first_head(trial))
                if levers:
                    for name, (method, env) in LEVERS.items():
                        trials.append(one_trial(bench, worker, file, method, round_, name, env))
    return trials


def derived(trial: dict[str, Any], method: str, seconds: float, label: str) -> dict[str, Any]:
    """A row computed from another trial's own timings, printed as it is made."""
    print(f"  {label:34} {trial['size'] / seconds / 2**20:7.1f} MiB/s")
    return {
        **trial,
        "method": method,
        "seconds": seconds,
        "mib_per_s": trial["size"] / seconds / 2**20,
    }


def stream_part(trial: dict[str, Any]) -> dict[str, Any]:
    """The worker's trial without its seal: the GET to the completed upload, as it logged."""
    return derived(trial, "worker_stream", trial["stream_seconds"], "  of which the stream")


def with_seal(trial: dict[str, Any]) -> dict[str, Any]:
    """The worker's trial and the seal its own task runs after the result (as it logged)."""
    seconds = trial["seconds"] + trial["seal_seconds"]
    return derived(trial, "worker_sealed", seconds, "  and then its seal")


def with_first_head(trial: dict[str, Any]) -> dict[str, Any]:
    """curl's trial with the HEAD after it: the MD5 rclone defers to a new file's first stat,
    which the worker's seal task pays (after the result) and curl's PUT alone does not."""
    seconds = trial["seconds"] + trial["first_head_seconds"]
    return derived(trial, "curl_head", seconds, "  with its first HEAD")


def one_trial(
    bench: Bench,
    worker: WorkerBench,
    file: CsvFile,
    method: str,
    round_: int,
    lever: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    key = f"{method}-{file.nominal_mib}-{round_}.csv"
    subprocess.run(["sync"], check=False)  # start each trial with no write-back pending
    label = lever or method
    try:
        if method == "curl":
            trial = bench.curl(file, key)
        elif method == "worker":
            trial = worker.export(file, key)
        else:
            trial = bench.child(method, file, key, env or {})
        bench.verify(file, key, trial)
    except Exception as error:  # one failed trial is reported, not the end of the run
        print(f"  {label:34} FAILED: {type(error).__name__}: {error}")
        return {"method": method, "lever": lever, "mib": file.nominal_mib, "error": str(error)}
    trial.update(method=method, lever=lever, mib=file.nominal_mib, size=file.size, round=round_)
    trial["mib_per_s"] = file.size / trial["seconds"] / 2**20
    print(f"  {label:34} {trial['mib_per_s']:7.1f} MiB/s  peak RSS {trial['peak_rss'] >> 20} MiB")
    return trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,512,2048", help="MiB, from 64, 512, 2048")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best one is reported")
    parser.add_argument("--levers", action="store_true", help="also time this path's levers")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    unknown = set(sizes) - set(CONTACTS_FOR_MIB)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}; choose from {sorted(CONTACTS_FOR_MIB)}")
    data_dir = s3_data_dir()
    trials: list[dict[str, Any]] = []
    try:
        with RcloneS3(data_dir / "data", log_path=data_dir / "rclone.log") as s3:
            s3.create_bucket(BUCKET)
            bench = Bench(s3, args.repeat)
            for mib in sizes:
                trials += run_size(bench, mib, args.levers)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    command = " ".join(["bench/stream.py", *sys.argv[1:]])
    # A lever run is kept apart, so it never replaces the table of the five methods.
    name = "stream-levers" if args.levers else "stream"
    table = report.write(trials, RESULTS_DIR, command=command, name=name)
    print(table)


if __name__ == "__main__":
    main()
