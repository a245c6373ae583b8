"""What a user would run instead of the worker, as command lines: the limit and two alternatives.

- ``curl PUT``: the spooled file PUT into the store (SigV4 by curl itself): what the store can take
  from one connection, with no download at all; the limit the worker is held to. curl declares
  no type, and SeaweedFS, sniffing text, then gzips the body in its gateway and gunzips it
  again in its volume server (see ``workers.s3.storage.declare_part_as_bytes``): ``curl PUT as
  bytes`` declares the body ``application/octet-stream``, the form that store charges least
  for, as a second limit.
- ``rclone copyurl``: the sandbox's results URL straight into the store through an S3 remote given
  on the command line (a connection string, no config file), with rclone's defaults.
- ``curl URL | aws s3 cp -``: the results URL piped into awscli v1, with its defaults.

Each command runs to its end as a child of the benchmark, its processes' RSS sampled
(``bench.sampling``) and its CPU time (user + sys) taken from ``RUSAGE_CHILDREN`` around it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.corpus import TOKEN, CsvFile
from bench.sampling import RssSampler
from devstack.s3server import ACCESS_KEY, SECRET_KEY, S3Server, rclone_binary, venv_binary
from workers.s3.storage import PART_CONTENT_TYPE

#: The sandbox's results link wants the Bearer token, as it does from the worker.
AUTHORIZATION = f"Authorization: Bearer {TOKEN}"


@dataclass(frozen=True)
class Ran:
    """One command line's run: wall seconds, when it began (epoch), its peak RSS summed over
    the pipeline's processes, and the CPU seconds (user + sys) they used."""

    seconds: float
    started_at: float
    peak_rss: int
    cpu_seconds: float


def run(stages: list[list[str]], env: dict[str, str] | None = None) -> Ran:
    """Run ``stages`` as a shell pipeline would (each one's stdout the next one's stdin), without
    a shell, so each process is sampled; raise with the stderr of any stage that failed."""
    environment = {**os.environ, **(env or {})}
    processes: list[subprocess.Popen[bytes]] = []
    errors: list[IO[bytes]] = []
    samplers: list[RssSampler] = []
    cpu_before = _children_cpu()
    started_at = time.time()
    started = time.monotonic()
    upstream: IO[bytes] | None = None
    for index, command in enumerate(stages):
        last = index == len(stages) - 1
        error: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 — closed after the stage
        process = subprocess.Popen(
            command,
            env=environment,
            stdin=upstream,
            stdout=subprocess.DEVNULL if last else subprocess.PIPE,
            stderr=error,
        )
        if upstream is not None:
            upstream.close()  # the next stage holds it now; a dead reader then stops the writer
        upstream = process.stdout
        processes.append(process)
        errors.append(error)
        samplers.append(RssSampler(process.pid).start())
    codes = [process.wait() for process in processes]
    seconds = time.monotonic() - started
    peak = sum(sampler.stop() for sampler in samplers)
    cpu = _children_cpu() - cpu_before
    failed = []
    for command, code, error in zip(stages, codes, errors, strict=True):
        error.seek(0)
        text = error.read().decode(errors="replace")
        error.close()
        if code != 0:
            failed.append(f"{command[0]} exited {code}: {text[-1500:]}")
    if failed:
        raise RuntimeError("; ".join(failed))
    return Ran(seconds, started_at, peak, cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def get_results(file: CsvFile) -> list[str]:
    """curl GET of the results link to stdout, as the first stage of a pipe."""
    return ["curl", "--silent", "--show-error", "--fail", "-H", AUTHORIZATION, file.results_url]


def curl_put(
    store: S3Server, file: CsvFile, bucket: str, key: str, content_type: str | None = None
) -> list[list[str]]:
    declared = ["-H", f"Content-Type: {content_type}"] if content_type else []
    return [
        [
            "curl",
            *declared,
            "--silent",
            "--show-error",
            "--fail",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            f"{ACCESS_KEY}:{SECRET_KEY}",
            "-T",
            str(file.path),
            f"{store.endpoint_url}/{bucket}/{key}",
            "-o",
            "/dev/null",
        ]
    ]


def curl_put_bytes(store: S3Server, file: CsvFile, bucket: str, key: str) -> list[list[str]]:
    """curl's PUT with the body declared as bytes: what a store that sniffs an untyped body
    (SeaweedFS) charges least for, as the worker's parts are declared."""
    return curl_put(store, file, bucket, key, content_type=PART_CONTENT_TYPE)


def rclone_copyurl(store: S3Server, file: CsvFile, bucket: str, key: str) -> list[list[str]]:
    """``--header-download`` sends the token with the GET only: ``--header`` would also replace
    the S3 requests' SigV4 Authorization."""
    remote = (
        f":s3,provider=Other,endpoint='{store.endpoint_url}',"
        f"access_key_id={ACCESS_KEY},secret_access_key={SECRET_KEY}:{bucket}/{key}"
    )
    return [
        [
            rclone_binary(),
            "copyurl",
            "--quiet",
            "--header-download",
            AUTHORIZATION,
            file.results_url,
            remote,
        ]
    ]


def aws_binary() -> str:
    return venv_binary("aws", "awscli (pip install -e '.[bench]')")


def curl_aws(store: S3Server, file: CsvFile, bucket: str, key: str) -> list[list[str]]:
    """The credentials and region come from the store's environment (``S3Server.env``)."""
    return [
        get_results(file),
        [
            aws_binary(),
            "s3",
            "cp",
            "-",
            f"s3://{bucket}/{key}",
            "--endpoint-url",
            store.endpoint_url,
            "--only-show-errors",
        ],
    ]


def version(command: list[str]) -> str:
    """The first line ``command`` prints, e.g. ``rclone v1.75.2`` for ``rclone version``."""
    answer = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (answer.stdout or answer.stderr).strip().splitlines()
    return lines[0].strip() if lines else Path(command[0]).name


def versions() -> str:
    """The versions of the tools the methods run, for the report. A missing awscli is said here
    and fails only the ``aws`` trials (each with the install hint), not the run."""
    try:
        aws = version([aws_binary(), "--version"])
    except RuntimeError as error:
        aws = str(error)
    return ", ".join(
        [version(["curl", "--version"]).split(" (")[0], version([rclone_binary(), "version"]), aws]
    )


#: A method's command line: its pipeline from the store, file, bucket and key.
Command = Callable[[S3Server, CsvFile, str, str], list[list[str]]]
#: The command-line methods.
COMMANDS: dict[str, Command] = {
    "curl": curl_put,
    "curl_bytes": curl_put_bytes,
    "copyurl": rclone_copyurl,
    "aws": curl_aws,
}
#: The methods that only PUT the spooled file (no download): timed as the PUT alone.
PUTS = ("curl", "curl_bytes")
