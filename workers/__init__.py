"""The Celery application: ``celery -A workers worker -Q contact_exports`` starts a worker."""

from celery import Celery

from workers import brokerfix

brokerfix.install()

app = Celery("contact_exports", include=["tasks.exports"])
app.config_from_object("celeryconfig")

__all__ = ["app"]
