"""The certificate files of a TLS-only Redis on loopback (``devstack.redis_server``), named as
redis-server's ``--tls-*`` options and the clients' REDIS_* settings use them; made by
``devstack.tls``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devstack.tls import make_certificates


@dataclass(frozen=True)
class RedisTls:
    """The files of one throwaway CA: what the server serves and what clients trust."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path


def make_redis_tls(directory: Path, name: str = "devstack redis") -> RedisTls:
    """A new CA in ``directory`` and the server and client certificates it signed."""
    made = make_certificates(directory, name)
    return RedisTls(made.ca, made.cert, made.key, made.client_cert, made.client_key)
