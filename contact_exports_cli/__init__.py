"""``contact-exports``: the operator's and developer's command line for the export workers.

Commands that only talk to Redis through Celery (submit, status, result, watch, failed, retry)
need the broker's URL and nothing else; ``accounts`` and ``doctor`` read the workers' own
settings, since they act on what the workers use (encrypted credentials, the bucket, the API).
"""
