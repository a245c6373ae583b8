"""Structured JSON logs: one object per line, carrying the job's context on every line.

Operators search logs by job, account and activity; binding those once per task (structlog's
context variables) puts them on every line that task writes — Celery's own lines included, since
stdlib records go through the same processors.
"""

from __future__ import annotations

import logging
import sys

import structlog

#: LOG_FORMAT values: ``json`` for machines, ``console`` for people at a terminal.
FORMATS = ("json", "console")


def configure(level: str = "INFO", fmt: str = "json") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        # Figures a line passes with ``extra=`` become fields a log search can filter on.
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def bind_job(**context: object) -> None:
    """Attach job context (job_id, account, activity_id, stage) to every later line."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in context.items() if v is not None})


def clear() -> None:
    structlog.contextvars.clear_contextvars()
