"""Every Redis key the service reads or writes, and how long each lives: the one place to look.

It sits in the client package because callers write the first job record themselves
(``contact_exports_client.ledger``) and must spell its key as the workers do; the workers import
it from here. It imports nothing of the worker.

    contact_exports:job:<job_id>                      hash: the job record (workers.state.jobs)
    contact_exports:job:<job_id>/uploads              set: multipart upload ids still open
    contact_exports:job:<job_id>/lease/<step>         string: who runs that step now
    contact_exports:dead_letters                      zset: failed job ids, by when they failed
    contact_exports:dead_seals                        zset: completed jobs whose seal was given up
    contact_exports:owned_activities                  set: activity ids some job owns
    contact_exports:janitor                           string: one janitor sweep at a time
    contact_exports:accounts                          set: account names with credentials
    contact_exports:account:<name>                    hash: encrypted credentials
    contact_exports:account:<name>:refresh-lock       string: one token refresh at a time
    contact_exports:account:<name>:posting            string: one export POST at a time
    contact_exports:account:<name>:durations:<shape>  list: recent durations of one request
    contact_exports:ratelimit:budget                  hash: the application's request budget
    contact_exports:ratelimit:active                  zset: accounts asking for permits
    contact_exports:ratelimit:reserved:<account>      zset: permits reserved ahead
    contact_exports:ratelimit:sent                    zset: requests sent in the last second
    contact_exports:ratelimit:returns:<account>       string: the next return time handed out

A job id may contain ``:`` but never ``/``, so the keys under a record are told apart from the
record of another job by their ``/`` (``job_id_of``).

Celery's own keys (``celery-task-meta-<id>``, the ``contact_exports`` list, ``unacked``) are
Celery's and kombu's, named by them.
"""

from __future__ import annotations

#: Every key of this service starts with this.
NAMESPACE = "contact_exports:"

#: A job record and the keys under it (``/uploads``, ``/lease/<step>``).
JOB_KEY_PREFIX = f"{NAMESPACE}job:"
#: How long a job record is kept after its last change: a late duplicate still finds it.
RECORD_TTL_SECONDS = 14 * 24 * 3600
#: Sorted set of failed job ids, scored by the time they failed.
DEAD_LETTERS_KEY = f"{NAMESPACE}dead_letters"
#: Sorted set of completed job ids whose seal was given up, scored by when.
DEAD_SEALS_KEY = f"{NAMESPACE}dead_seals"
#: Set of every activity id some job owns, so an orphan found by listing is told apart.
OWNED_ACTIVITIES_KEY = f"{NAMESPACE}owned_activities"
#: One janitor sweep at a time across the cluster.
JANITOR_LOCK_KEY = f"{NAMESPACE}janitor"

#: Per-account keys start with this; account names never contain ``:``.
ACCOUNT_KEY_PREFIX = f"{NAMESPACE}account:"
#: Set of every account name with stored credentials.
ACCOUNTS_KEY = f"{NAMESPACE}accounts"

#: The cluster rate limiter's keys start with this.
RATELIMIT_KEY_PREFIX = f"{NAMESPACE}ratelimit:"


def job_key(job_id: str) -> str:
    """Hash: the job record."""
    return f"{JOB_KEY_PREFIX}{job_id}"


def job_uploads_key(job_id: str) -> str:
    """Set: the job's multipart upload ids that may still be open."""
    return f"{JOB_KEY_PREFIX}{job_id}/uploads"


def job_lease_key(job_id: str, step: str) -> str:
    """String: the holder of the job's ``step`` right now (workers.state.leases)."""
    return f"{JOB_KEY_PREFIX}{job_id}/lease/{step}"


def job_id_of(key: str) -> str | None:
    """The job id of a job record's key; None for the keys under a record (leases, uploads)."""
    job_id = key.removeprefix(JOB_KEY_PREFIX)
    return job_id if job_id != key and "/" not in job_id else None


def account_key(name: str) -> str:
    """Hash: ``secret`` (encrypted credentials), ``version`` (bumped on every write), ``state``."""
    return f"{ACCOUNT_KEY_PREFIX}{name}"


def refresh_lock_key(name: str) -> str:
    """String: the worker refreshing the account's token now."""
    return f"{ACCOUNT_KEY_PREFIX}{name}:refresh-lock"


def posting_lease_key(name: str) -> str:
    """String: the job POSTing an export for the account now (one at a time per account)."""
    return f"{ACCOUNT_KEY_PREFIX}{name}:posting"


#: How long an account's recent durations of one request shape are kept after the last one.
DURATIONS_TTL_SECONDS = 30 * 24 * 3600


def durations_key(name: str, shape: str) -> str:
    """List: seconds the account's latest activities of one request shape took, newest first."""
    return f"{ACCOUNT_KEY_PREFIX}{name}:durations:{shape}"


def budget_key() -> str:
    """Hash: ``tat`` (next free permit time), ``day`` (UTC day number) and ``used`` that day."""
    return f"{RATELIMIT_KEY_PREFIX}budget"


def active_key() -> str:
    """Sorted set: accounts scored by when they last asked for a permit."""
    return f"{RATELIMIT_KEY_PREFIX}active"


def reserved_key(account: str) -> str:
    """Sorted set: the account's permits reserved ahead (slept for in place right now)."""
    return f"{RATELIMIT_KEY_PREFIX}reserved:{account}"


def sent_key() -> str:
    """Sorted set: when each of the last second's requests really went out."""
    return f"{RATELIMIT_KEY_PREFIX}sent"


def returns_key(account: str) -> str:
    """String: the next return time the account's dispenser hands to a refused step."""
    return f"{RATELIMIT_KEY_PREFIX}returns:{account}"
