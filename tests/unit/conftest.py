"""The one real service unit tests use: Redis, in a database of their own flushed around each
test, reached two ways (``redis_url``, ``r``):

* ``plain``: the machine's Redis (TEST_REDIS_UNIT_URL, default db 15 on 127.0.0.1:6379; the
  integration tests use 14, the demo and the benchmarks 8; each pytest-xdist process takes
  databases of its own, see ``tests.redisdb``);
* ``tls-acl``: a TLS-only Redis of the session's own whose ``default`` user is off, reached as
  the service's ACL user with exactly the rights docs/configuration.md gives it
  (``devstack.redis_server.SERVICE_ACL``), through the client the service itself makes
  (``redis_at``). Every test of the job records, leases, the limiter and the token store runs
  both ways, so a key or a command outside the documented ACL fails here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import redis

from contact_exports_client.redis_tls import redis_at
from devstack.redis_server import SERVICE_ACL, AclUser, RedisServer
from devstack.tls import make_certificates
from tests.redisdb import redis_url_for

UNIT_REDIS_URL = redis_url_for("TEST_REDIS_UNIT_URL", 15)
SERVICE_USER = "contact_exports"


@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    root = tmp_path_factory.mktemp("unit-redis-tls")
    server = RedisServer(
        root / "data",
        tls=make_certificates(root / "tls", "unit redis"),
        users=[AclUser(SERVICE_USER, secrets.token_urlsafe(16), SERVICE_ACL)],
        durable=False,
    )
    with server:
        yield server


def tls_url(server: RedisServer) -> str:
    """The ACL user's URL, trusting the server's CA by the URL's own ``ssl_cert_reqs`` and
    ``ssl_ca_certs``, as docs/configuration.md allows, so that code which opens a URL (Celery's
    backend too) needs no other setting."""
    assert server.tls is not None
    user = server.users[0]
    ca = quote(str(server.tls.ca), safe="/")
    return f"{server.url_for(user.name, user.password)}?ssl_cert_reqs=required&ssl_ca_certs={ca}"


@pytest.fixture(params=["plain", "tls-acl"])
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis URL for the test alone: its database is empty before and after."""
    if request.param == "plain":
        url = UNIT_REDIS_URL
        admin = redis.Redis.from_url(url)
    else:
        server: RedisServer = request.getfixturevalue("tls_redis")
        url = tls_url(server)
        admin = server.admin_client()
    admin.flushdb()
    yield url
    admin.flushdb()
    admin.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis_at(redis_url)
    yield client
    client.close()
