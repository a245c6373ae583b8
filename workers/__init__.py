"""The contact-export worker: Constant Contact exports streamed into S3.

Importing this package does nothing. The Celery application is ``workers.celery.app``, which
``celery -A workers worker -Q contact_exports`` finds by itself; ``docs/architecture.md`` maps
the modules.
"""
