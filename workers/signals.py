"""Worker life-cycle hooks: logging set-up, the metrics endpoint, per-task log context.

Cross-cutting concerns live here, around the tasks, not inside them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals

from workers import logconfig, metrics
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
