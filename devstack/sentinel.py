"""A Redis Sentinel group on loopback: a master, a replica and three Sentinels, each a
``redis-server`` process (``redis-server FILE --sentinel`` for the Sentinels).

Failover is tuned for tests: a master is taken for down after ``down_after_ms`` (1 s) without an
answer, two Sentinels must agree (the quorum), and one of them promotes the replica. From the kill
to a promoted replica takes about 2-5 s here.

``SentinelGroup(dir, tls=make_certificates(...))`` (``devstack.tls``) serves TLS only, on every
port: the master, the replica (which replicates over TLS) and the Sentinels, as a deployment
with ``REDIS_SENTINEL_TLS=true`` expects.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from devstack.ports import POLL_INTERVAL, free_port, wait_for_port
from devstack.process import Managed
from devstack.redis_server import START_TIMEOUT, RedisServer
from devstack.tls import ServerCertificate

MASTER_NAME = "contact-exports"
SENTINELS = 3
QUORUM = 2
#: Seconds to wait for the Sentinels to know each other and the replica, or for a failover.
SETTLE_TIMEOUT = 30.0


class SentinelGroup(Managed):
    def __init__(
        self, data_dir: Path, *, down_after_ms: int = 1000, tls: ServerCertificate | None = None
    ) -> None:
        self.data_dir = data_dir
        self.down_after_ms = down_after_ms
        self.tls = tls
        self.servers: list[RedisServer] = []
        self.sentinel_ports: list[int] = []
        self._sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, db: int = 0) -> str:
        """The ``sentinel://`` URL of all three Sentinels, as the service takes it."""
        return ";".join(f"sentinel://127.0.0.1:{port}/{db}" for port in self.sentinel_ports)

    def start(self) -> SentinelGroup:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        # A replica's first sync waits repl-diskless-sync-delay (5 s) for others to join.
        quick_sync = ["--repl-diskless-sync-delay", "0"]
        if self.tls:
            quick_sync += ["--tls-replication", "yes"]
        master = RedisServer(self.data_dir / "master", options=quick_sync, tls=self.tls).start()
        replica = RedisServer(
            self.data_dir / "replica", replica_of=master.port, options=quick_sync, tls=self.tls
        ).start()
        self.servers = [master, replica]
        for n in range(SENTINELS):
            home = self.data_dir / f"sentinel-{n}"
            home.mkdir(parents=True, exist_ok=True)
            port = free_port()
            config = home / "sentinel.conf"  # a Sentinel rewrites its file: one of its own
            config.write_text(
                self._listen(port) + f"bind 127.0.0.1\ndir {home}\n"
                f"logfile {home / 'sentinel.log'}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            process = subprocess.Popen(
                [binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL
            )
            self._sentinels.append(process)
            self.sentinel_ports.append(port)
            wait_for_port(port, process, START_TIMEOUT)
        self._wait(self._settled, "the Sentinels to know each other and the replica")
        return self

    def _listen(self, port: int) -> str:
        """A Sentinel's configuration lines for where it listens, and how it reaches the
        servers and the other Sentinels (TLS only, with the group's certificate)."""
        if self.tls is None:
            return f"port {port}\n"
        return (
            f"port 0\ntls-port {port}\ntls-cert-file {self.tls.cert}\n"
            f"tls-key-file {self.tls.key}\ntls-ca-cert-file {self.tls.ca}\n"
            "tls-auth-clients no\ntls-replication yes\n"
        )

    def _client(self, port: int) -> redis.Redis:
        """An admin's client of a server or Sentinel of the group, over TLS if it speaks it."""
        tls: dict[str, Any] = {}
        if self.tls:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca), "ssl_cert_reqs": "required"}
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0, **tls)

    def sentinel(self, n: int = 0) -> redis.Redis:
        return self._client(self.sentinel_ports[n])

    def master_port(self) -> int:
        """The master's port, as the first Sentinel that answers names it."""
        for n in range(len(self.sentinel_ports)):
            try:
                address = self._master_address(n)
            except redis.ConnectionError:
                continue
            if address is not None:
                return address[1]
        raise RuntimeError("no Sentinel names a master")

    def master(self) -> RedisServer:
        port = self.master_port()
        [server] = [server for server in self.servers if server.port == port]
        return server

    def kill_master(self) -> int:
        """SIGKILL the master (no SHUTDOWN, no last write), and return its port."""
        server = self.master()
        server.kill()
        return server.port

    def wait_failover(self, old_port: int) -> int:
        """Wait until every Sentinel names a new master that answers as one; its port."""
        self._wait(lambda: self._promoted(old_port), "a replica promoted to master")
        return self.master_port()

    def _master_address(self, n: int) -> tuple[str, int] | None:
        """Sentinel ``n``'s answer to SENTINEL GET-MASTER-ADDR-BY-NAME."""
        answer: Any = self.sentinel(n).sentinel_get_master_addr_by_name(MASTER_NAME)
        if not answer:
            return None
        host, port = answer
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    def _settled(self) -> bool:
        """Every Sentinel knows the others and the replica, and the replica has synced (until
        then a failover would promote an empty replica)."""
        replica = self._client(self.servers[1].port)
        if replica.info("replication").get("master_link_status") != "up":
            return False
        for n in range(SENTINELS):
            state: dict[str, Any] = self.sentinel(n).sentinel_master(MASTER_NAME)  # type: ignore[assignment]
            if int(state["num-other-sentinels"]) < SENTINELS - 1 or int(state["num-slaves"]) < 1:
                return False
        return True

    def _promoted(self, old_port: int) -> bool:
        ports = set()
        for n in range(SENTINELS):
            address = self._master_address(n)
            if address is None:
                return False
            ports.add(address[1])
        if ports == {old_port} or len(ports) != 1:
            return False
        role: list[Any] = self._client(ports.pop()).role()
        return bool(role) and role[0] in (b"master", "master")

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if done():
                    return
            except redis.ConnectionError:
                pass
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"waited {SETTLE_TIMEOUT}s for {what}")

    def stop(self) -> None:
        for process in self._sentinels:
            process.kill()
            process.wait(timeout=20)
        self._sentinels = []
        for server in self.servers:
            server.kill()
