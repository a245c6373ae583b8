"""The S3 stores the stream benchmark writes into, each with where its bytes land stated.

A throughput figure means little without the store behind it: ``rclone serve s3`` writing files on
the virtual disk pays the page cache and write-back, the same on tmpfs pays only memory copies, and
SeaweedFS stores needles in volume files and checks every checksum the client sends. So each store
is a named setup (``--stores``) whose description (server version, data directory, filesystem)
is printed and written beside its figures.

Data directories on disk go under ``bench/.spool/stores`` (git-ignored, on /work's disk), those on
tmpfs under ``/dev/shm``; each is removed when the store stops.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from bench.corpus import SPOOL_DIR
from bench.tools import version
from devstack.s3server import RcloneS3, S3Server, rclone_binary
from devstack.seaweedfs import SeaweedS3, weed_binary

#: Where a store's files go when it is on disk: git-ignored, on the same disk as /work.
DISK_BASE = SPOOL_DIR / "stores"
#: Where a store's files go when it is on tmpfs.
TMPFS_BASE = Path("/dev/shm")
#: The bucket every method writes into.
BUCKET = "bench"
#: Volumes SeaweedFS may create in the benchmark (devstack's 40 x 128 MB hold one 2 GiB round
#: only just): deleted objects are reclaimed once per round (``reclaim``), not at once.
BENCH_VOLUME_MAX = 400
#: How long a SeaweedFS vacuum may take (about 5 s for a few volumes).
VACUUM_TIMEOUT = 300.0


class BenchSeaweedS3(SeaweedS3):
    """devstack's SeaweedFS with room for a benchmark round's objects: a deleted object's bytes
    stay in its volume until a vacuum, so without ``reclaim`` a 2 GiB run fills every volume."""

    def command(self) -> list[str]:
        return [
            f"-volume.max={BENCH_VOLUME_MAX}" if arg.startswith("-volume.max=") else arg
            for arg in super().command()
        ]

    def vacuum(self) -> None:
        """Compact every volume now (the master's ``/vol/vacuum``), dropping deleted objects."""
        master = f"http://127.0.0.1:{self.ports['master.port']}/vol/vacuum"
        response = requests.get(
            master, params={"garbageThreshold": "0.0001"}, timeout=VACUUM_TIMEOUT
        )
        response.raise_for_status()


@dataclass(frozen=True)
class StoreSetup:
    """One ``--stores`` choice: which server, and whether its files live on tmpfs or disk."""

    name: str
    server: type[RcloneS3] | type[BenchSeaweedS3]
    tmpfs: bool

    @contextmanager
    def running(self) -> Iterator[RunningStore]:
        """The server started on a fresh data directory, the bucket made; all removed after."""
        base = TMPFS_BASE if self.tmpfs else DISK_BASE
        if self.tmpfs and not base.is_dir():
            raise RuntimeError(f"{self.name} needs tmpfs at {base}, which this machine lacks")
        base.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=f"bench-s3-{self.name}-", dir=base))
        try:
            with self.server(root / "data", log_path=root / "server.log") as server:
                server.create_bucket(BUCKET)
                yield RunningStore(self, server, root / "data")
        finally:
            shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class RunningStore:
    setup: StoreSetup
    server: S3Server
    data_dir: Path

    @property
    def name(self) -> str:
        return self.setup.name

    def describe(self) -> str:
        """What the store is and where its bytes go, for the report."""
        if isinstance(self.server, BenchSeaweedS3):
            what = f"SeaweedFS `weed server -filer -s3` ({version([weed_binary(), 'version'])})"
        else:
            what = f"`rclone serve s3` ({version([rclone_binary(), 'version'])})"
        return f"{what}, data in `{self.data_dir}` ({filesystem(self.data_dir)})"

    def reclaim(self) -> None:
        """Free the space of the objects deleted so far, where the store does not by itself."""
        if isinstance(self.server, BenchSeaweedS3):
            self.server.vacuum()


STORES: dict[str, StoreSetup] = {
    "rclone-disk": StoreSetup("rclone-disk", RcloneS3, tmpfs=False),
    "rclone-tmpfs": StoreSetup("rclone-tmpfs", RcloneS3, tmpfs=True),
    "seaweedfs": StoreSetup("seaweedfs", BenchSeaweedS3, tmpfs=False),
    "seaweedfs-tmpfs": StoreSetup("seaweedfs-tmpfs", BenchSeaweedS3, tmpfs=True),
}
#: The stores of a run without ``--stores``.
DEFAULT_STORES = ("rclone-disk", "rclone-tmpfs", "seaweedfs")


def filesystem(path: Path) -> str:
    """The filesystem ``path`` lies on, as ``fstype on device (mountpoint)``."""
    resolved = str(path.resolve())
    mounts = [
        part
        for part in psutil.disk_partitions(all=True)
        if resolved == part.mountpoint or resolved.startswith(part.mountpoint.rstrip("/") + "/")
    ]
    if not mounts:
        return "unknown filesystem"
    mount = max(mounts, key=lambda part: len(part.mountpoint))
    return f"{mount.fstype} on {mount.device}, mounted at {mount.mountpoint}"
