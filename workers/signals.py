"""Worker life-cycle hooks: logging set-up, the metrics endpoint, per-task log context.

Cross-cutting concerns live here, around the tasks, not inside them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals

from workers import logconfig, malloc, metrics
from workers.settings import get_settings


@signals.setup_logging.connect
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    """Connected, so Celery leaves logging to us: JSON lines on stderr."""
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel or "INFO"
    logconfig.configure(level, get_settings().log_format)


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    port = get_settings().metrics_port
    if port:
        metrics.serve(port)


@signals.worker_process_init.connect
def _prepare_pool_process(**_: Any) -> None:
    """Each pool process, before its first task: freed part buffers go back to the system
    (``workers.malloc``), and the S3 client (botocore's service model, about 25 MiB and a tenth of
    a second) is built now instead of inside the first download."""
    malloc.pin_mmap_threshold()
    from tasks.context import s3_client  # the tasks package imports this app: import it late

    s3_client()


@signals.worker_ready.connect
def _start_janitor(sender: Any = None, **_: Any) -> None:
    from tasks import janitor  # the tasks package imports this app: import it late
    from tasks.context import redis_client

    janitor.start(sender.app, redis_client(), get_settings())


@signals.worker_process_shutdown.connect
def _forget_process(**_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics.process_gone(os.getpid())


@signals.task_prerun.connect
def _task_context(task: Any = None, **_: Any) -> None:
    logconfig.clear()
    if task is not None:
        logconfig.bind_job(task=task.name)


@signals.task_postrun.connect
def _drop_context(**_: Any) -> None:
    logconfig.clear()
