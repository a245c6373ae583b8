"""The Celery application: ``celery -A workers worker -Q contact_exports`` starts a worker.

This is the one module whose import builds something: the app, its configuration (read lazily
from ``celeryconfig``) and the worker's life-cycle handlers (``workers.lifecycle``), which do
their work only when a worker starts. Celery finds this module as ``workers.celery`` by itself
(Celery's own ``proj/celery.py`` layout).
"""

from __future__ import annotations

import os
import tempfile

# prometheus-client picks its storage when first imported: every pool process must write to files
# the main process can gather, so the directory is fixed before anything imports it.
if os.environ.get("METRICS_PORT") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="contact-exports-metrics-")

from celery import Celery

from workers import lifecycle

#: The modules that define the tasks; imported by the worker, never by this package.
TASK_MODULES = ["tasks.exports", "tasks.notify", "tasks.sealing", "tasks.cancel"]

app = Celery("contact_exports", include=TASK_MODULES)
app.config_from_object("celeryconfig")
lifecycle.connect(app)

__all__ = ["app"]
