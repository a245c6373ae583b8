"""The export steps, without Celery: start, create, poll, download, seal, notify; the janitor."""
