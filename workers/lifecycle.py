"""Worker life-cycle hooks: logging, broker guards, the metrics endpoint, the janitor, the
services each pool process builds, and per-task log context.

Nothing happens on import: ``connect(app)`` (called by ``workers.celery``) wires the handlers,
and each does its work when Celery sends its signal, in the process that should do it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals

from contact_exports_client.signing import sign_messages
from workers import brokerfix, logconfig, malloc, metrics
from workers.export import cancel, janitor
from workers.services import Services, build_services, jobs_redis
from workers.settings import get_settings
from workers.startup import check_redis, check_s3_signer
from workers.state.jobs import JobStore


class ProcessServices:
    """The ``Services`` of this process, built on first use after a fork (never inherited)."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._pid: int | None = None
        self._services: Services | None = None

    def get(self) -> Services:
        if self._services is None or self._pid != os.getpid():
            self._services = build_services(
                get_settings(), sender=self._app, results=self._app.backend
            )
            self._pid = os.getpid()
        return self._services

    def use(self, services: Services) -> None:
        """Run this process's tasks with ``services`` (tests, embedding)."""
        self._services, self._pid = services, os.getpid()


def services_of(app: Celery) -> ProcessServices:
    """The holder ``connect`` put on ``app``."""
    holder = getattr(app, "process_services", None)
    if not isinstance(holder, ProcessServices):
        raise RuntimeError("the app has no services: call workers.lifecycle.connect(app)")
    return holder


class Handlers:
    """The handler of each worker signal, for one app."""

    def __init__(self, app: Celery, services: ProcessServices) -> None:
        self.app = app
        self.services = services

    def after_configure(self, **_: Any) -> None:
        """As soon as the app has read its configuration (celeryconfig), in every process that
        uses it: with MESSAGE_SIGNING_*, register the signing serializer, which the worker
        needs before it even starts (Celery checks ``accept_content`` first)."""
        signing = get_settings().message_signing
        if signing is not None:
            sign_messages(self.app, signing)

    def setup_logging(self, loglevel: Any = None, **_: Any) -> None:
        """Connected, so Celery leaves logging to us: JSON lines on stderr."""
        level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
        logconfig.configure(level or "INFO", get_settings().log_format)

    def worker_init(self, **_: Any) -> None:
        """The worker's main process, before it connects: every Redis is checked once (bad
        credentials or an untrusted certificate stop the worker here, instead of Celery retrying
        them forever), and botocore's signer; then broker guards, the cancel command, metrics
        endpoint."""
        check_redis(get_settings())
        check_s3_signer()
        brokerfix.install()
        cancel.answer_cancels(self.app, lambda: JobStore(jobs_redis(get_settings())))
        port = get_settings().metrics_port
        if port:
            metrics.serve(port)

    def process_init(self, **_: Any) -> None:
        """Each pool process, before its first task: freed part buffers and Arrow's memory go
        back to the system (``workers.malloc``), and its services — among them the S3 client
        (botocore's service model, about 25 MiB and a tenth of a second) — are built now
        instead of inside the first download."""
        malloc.pin_mmap_threshold()
        malloc.return_arrow_memory()  # before a format's job imports pyarrow
        self.services.get()

    def worker_ready(self, **_: Any) -> None:
        settings = get_settings()
        janitor.start(
            self.app,
            jobs_redis(settings),
            settings,
        )

    def process_shutdown(self, **_: Any) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics.process_gone(os.getpid())

    def task_prerun(self, task: Any = None, **_: Any) -> None:
        logconfig.clear()
        if task is not None:
            logconfig.bind_job(task=task.name)

    def task_postrun(self, **_: Any) -> None:
        logconfig.clear()


def connect(app: Celery) -> Handlers:
    """Wire the worker's handlers for ``app``; each runs only when its signal is sent."""
    holder = ProcessServices(app)
    app.process_services = holder  # type: ignore[attr-defined]  # read back by services_of
    handlers = Handlers(app, holder)
    app.on_after_configure.connect(handlers.after_configure, weak=False)
    signals.setup_logging.connect(handlers.setup_logging, weak=False)
    signals.worker_init.connect(handlers.worker_init, weak=False)
    signals.worker_process_init.connect(handlers.process_init, weak=False)
    signals.worker_ready.connect(handlers.worker_ready, weak=False)
    signals.worker_process_shutdown.connect(handlers.process_shutdown, weak=False)
    signals.task_prerun.connect(handlers.task_prerun, weak=False)
    signals.task_postrun.connect(handlers.task_postrun, weak=False)
    return handlers
