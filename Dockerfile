# Image for the contact-export-worker Celery worker and the local Constant Contact sandbox.
# docker-compose.yml builds it once per service (worker, sandbox); the default CMD is the worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Unprivileged runtime user: the worker needs no privileges (it only talks to Redis, the CC API
# and S3 over the network), and Celery warns when run as root (refuses if it accepts pickle).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

WORKDIR /app

# Only what `pip install .` needs (pyproject's [tool.setuptools] packages and py-modules, plus
# the readme it references); tests/deploy checks this list against pyproject.toml.
COPY pyproject.toml README.md celeryconfig.py ./
COPY workers/ workers/
COPY tasks/ tasks/
COPY sandbox/ sandbox/
COPY devstack/ devstack/
COPY contact_exports_cli/ contact_exports_cli/
COPY contact_exports_client/ contact_exports_client/

# Installed as root, so the runtime user cannot modify the code it runs.
# With the formats extra (zstandard, pyarrow): every export format works in the image.
RUN pip install --no-cache-dir ".[formats]"

USER app

# Exec form so celery is the signalled process: `docker stop` sends SIGTERM, which Celery treats
# as a warm shutdown (finish running tasks, then exit) within compose's stop_grace_period.
CMD ["celery", "-A", "workers", "worker", "-Q", "contact_exports", "--loglevel", "INFO"]
