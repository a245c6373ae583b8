"""The Celery application: ``celery -A workers worker -Q contact_exports`` starts a worker."""

import os
import tempfile

# prometheus-client picks its storage when first imported: every pool process must write to files
# the main process can gather, so the directory is fixed before anything imports it.
if os.environ.get("METRICS_PORT") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="contact-exports-metrics-")

from celery import Celery

from workers import brokerfix

brokerfix.install()

app = Celery("contact_exports", include=["tasks.exports", "tasks.notify", "tasks.sealing"])
app.config_from_object("celeryconfig")

from workers import signals  # noqa: E402, F401 — connects the worker's signal handlers

__all__ = ["app"]
