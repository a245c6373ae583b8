"""Which Redis database a test process uses, so that pytest-xdist's processes never share one.

``make test`` runs the suite in three processes (``-n 3``). Unit tests flush their database around
every test and integration tests flush theirs per session, so each process needs its own: the
first (``gw0``, or no xdist at all) keeps the documented databases (unit 15, integration 14),
the next one takes the two below (13, 12), and so on.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

#: Databases a test process takes: unit and integration.
DBS_PER_PROCESS = 2


def process_index() -> int:
    """0 for the first xdist process (``gw0``) or a run without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw"))


def redis_url_for(variable: str, default_db: int) -> str:
    """The URL in ``variable`` (default: the machine's Redis on loopback, ``default_db``), its
    database moved down by this process's index, so a URL given for a one-process run still
    works with xdist."""
    url = os.environ.get(variable, f"redis://127.0.0.1:6379/{default_db}")
    parts = urlsplit(url)
    db = int(parts.path.lstrip("/") or 0) - DBS_PER_PROCESS * process_index()
    if db < 0:
        raise RuntimeError(f"{variable}: too many test processes for database {url}")
    return urlunsplit(parts._replace(path=f"/{db}"))
