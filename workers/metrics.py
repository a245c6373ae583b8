"""Prometheus metrics of the exports, gathered across the prefork pool.

Each pool process writes its samples to files in PROMETHEUS_MULTIPROC_DIR and the worker's main
process serves them all (prometheus-client's multiprocess mode) on METRICS_PORT. Without that
directory a scrape would see only the main process, which runs no tasks.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

#: Every metric name starts with this.
NAMESPACE = "contact_exports"

EXPORTS_STARTED = Counter("exports_started", "Exports accepted for work.", namespace=NAMESPACE)
EXPORTS_COMPLETED = Counter("exports_completed", "Exports stored in S3.", namespace=NAMESPACE)
EXPORTS_FAILED = Counter(
    "exports_failed", "Exports that failed for good, by reason.", ["reason"], namespace=NAMESPACE
)
STAGE_SECONDS = Histogram(
    "stage_seconds",
    "Time spent in one run of a step.",
    ["stage"],
    namespace=NAMESPACE,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
BYTES_STREAMED = Counter("bytes_streamed", "CSV bytes stored in S3.", namespace=NAMESPACE)
API_CALLS = Counter(
    "api_calls",
    "Constant Contact API calls, by endpoint and HTTP status.",
    ["endpoint", "status"],
    namespace=NAMESPACE,
)
RATE_LIMIT_WAITS = Counter(
    "rate_limit_waits", "Requests that had to wait for the shared budget.", namespace=NAMESPACE
)
TOKEN_REFRESHES = Counter("token_refreshes", "OAuth token refreshes.", namespace=NAMESPACE)


def serve(port: int) -> None:
    """Serve every pool process's samples from this (the main) process."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr="0.0.0.0", registry=registry)  # noqa: S104 — scraped from outside


def process_gone(pid: int) -> None:
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
