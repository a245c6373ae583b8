"""A Redis server of our own on a free loopback port, for tests that restart or kill it.

It keeps an append-only file, as a production broker should: without one a restart loses every
queued message, and no worker can finish what the broker forgot.

``RedisServer(dir, tls=make_certificates(...), users=[AclUser(...)])`` (``devstack.tls``)
serves TLS only (no plain port) and knows only the users given, with the ``default`` user off;
an ``admin`` user with every right (``admin_client``) stays for the tests' own reads and for
shutting the server down.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.ports import free_port, wait_for_port
from devstack.process import Managed
from devstack.tls import ServerCertificate

START_TIMEOUT = 20.0
ADMIN_USER = "admin"
#: The least rights the service needs, as docs/configuration.md gives them: its keys, Celery's
#: and kombu's, and the command groups they use, none of the dangerous ones. The TLS suites run
#: with exactly this (tests/unit/conftest.py, tests/integration/test_redis_tls_acl.py).
SERVICE_ACL = (
    "resetkeys ~contact_exports* ~celery-task-meta-* ~_kombu.* ~unacked* ~*.celery.pidbox* "
    "resetchannels &* "
    "-@all +@connection +@read +@write +@pubsub +@scripting +@transaction +time "
    "-@dangerous"
)


@dataclass(frozen=True)
class AclUser:
    """One ACL user: ``rules`` as after ``user <name> on >password`` in an ACL file."""

    name: str
    password: str
    rules: str

    def line(self) -> str:
        return f"user {self.name} on >{self.password} {self.rules}"


class RedisServer(Managed):
    def __init__(
        self,
        data_dir: Path,
        *,
        tls: ServerCertificate | None = None,
        users: Sequence[AclUser] = (),
        tls_auth_clients: Literal["no", "optional", "yes"] = "no",
        durable: bool = True,
        replica_of: int | None = None,
        options: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.tls = tls
        self.users = list(users)
        self.tls_auth_clients = tls_auth_clients
        #: An append-only file, fsynced on every write (see above); off for throwaway suites.
        self.durable = durable
        #: The port of the master this server replicates (a plain Redis on loopback), if any.
        self.replica_of = replica_of
        #: More ``redis-server`` options, as ``--name value`` arguments.
        self.options = list(options)
        self.admin = AclUser(ADMIN_USER, secrets.token_urlsafe(16), "~* &* +@all")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "rediss" if self.tls else "redis"

    @property
    def url(self) -> str:
        """Plain: the default user's URL. With users: the first user's."""
        if self.users:
            return self.url_for(self.users[0].name, self.users[0].password)
        return f"{self.scheme}://127.0.0.1:{self.port}/0"

    def url_for(self, user: str, password: str, db: int = 0) -> str:
        return f"{self.scheme}://{user}:{password}@127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", self.tls_auth_clients,
            ]  # fmt: skip
        if self.users:
            acl_file = self.data_dir / "users.acl"
            lines = ["user default off", self.admin.line(), *(u.line() for u in self.users)]
            acl_file.write_text("\n".join(lines) + "\n")
            acl_file.chmod(0o600)
            listen += ["--aclfile", str(acl_file)]
        if self.replica_of is not None:
            listen += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        listen += self.options
        self._process = subprocess.Popen(
            [
                binary,
                "--bind", "127.0.0.1",
                *listen,
                "--dir", str(self.data_dir),
                *(
                    ["--appendonly", "yes", "--appendfsync", "always"]
                    if self.durable
                    else ["--appendonly", "no"]
                ),
                "--save", "",
                "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self._process, START_TIMEOUT)
        return self

    def admin_client(self, **kwargs: Any) -> redis.Redis:
        """A client with every right (the ``default`` user's when there are no users)."""
        if self.tls:
            kwargs.setdefault("ssl", True)
            kwargs.setdefault("ssl_ca_certs", str(self.tls.ca))
            kwargs.setdefault("ssl_cert_reqs", "required")
            if self.tls_auth_clients != "no":
                kwargs.setdefault("ssl_certfile", str(self.tls.client_cert))
                kwargs.setdefault("ssl_keyfile", str(self.tls.client_key))
        if self.users:
            kwargs.setdefault("username", self.admin.name)
            kwargs.setdefault("password", self.admin.password)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def stop(self) -> None:
        """Shut down cleanly (the AOF is flushed), as a restart by an operator would."""
        if self._process is None or self._process.poll() is not None:
            return
        # The server closes the connection as it goes down.
        # Once: redis-py would retry SHUTDOWN on the connection the server closes as it goes
        # down (seconds of backoff before giving up).
        with contextlib.suppress(redis.ConnectionError):
            self.admin_client(retry=Retry(NoBackoff(), 0)).shutdown(nosave=False)
        self._process.wait(timeout=20)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed machine's would, answering nothing more."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=20)
            self._process = None
