"""How long an account's recent activities of the same request took: the poll schedule's hint.

An activity that reports no progress until it is done (or reports it in quarters) can only be
waited for in multiples of its age, which is either late or costly in polls
(``workers.polling``). What does help is knowing how long it will take, and for the exports a
service like this carries that is often known: an application asks for the same export again
and again (the nightly copy of a list, with the same fields), and such an activity takes about
as long as the last few did.

So the hint is kept per account and per *request shape*: the digest of the API body the
activity was created from. A request never seen before gets no hint, so a small one-off export
is never held to the duration of the account's big nightly one, which a hint per account alone
would do (a hint far too long is the one mistake that costs latency). The median of the last
``SAMPLES`` takes the odd slow run out.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Mapping
from typing import Any

import redis

from contact_exports_client.keys import DURATIONS_TTL_SECONDS, durations_key

#: Durations kept per account and shape; the hint is their median.
SAMPLES = 5


def request_shape(body: Mapping[str, Any]) -> str:
    """The digest of an activity's API body, key order aside."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


class Durations:
    """Recent activity durations in Redis, shared by every worker."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def record(self, account: str, shape: str, seconds: float) -> None:
        """One activity of this shape took ``seconds`` from its creation to its completion."""
        if seconds < 0:
            return  # stamps out of order: nothing to learn
        key = durations_key(account, shape)
        pipe = self._redis.pipeline()
        pipe.lpush(key, f"{seconds:.3f}")
        pipe.ltrim(key, 0, SAMPLES - 1)
        pipe.expire(key, DURATIONS_TTL_SECONDS)
        pipe.execute()

    def expected(self, account: str, shape: str) -> float | None:
        """The median of the recent durations of this shape; None before the first."""
        raw = self._redis.lrange(durations_key(account, shape), 0, SAMPLES - 1)
        values = [float(value) for value in raw]
        return statistics.median(values) if values else None
