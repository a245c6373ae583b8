"""The Celery application: ``celery -A workers worker -Q contact_exports`` starts a worker."""

from celery import Celery

app = Celery("contact_exports", include=["tasks.exports"])
app.config_from_object("celeryconfig")

__all__ = ["app"]
