"""Real parts for integration tests: Redis, an S3 server, the sandbox and celery workers.

Redis is the machine's server (TEST_REDIS_URL, default db 14 on 127.0.0.1:6379), flushed before
and after. S3 is ``rclone serve s3`` on a free port unless S3_ENDPOINT_URL names another server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import redis
from botocore.config import Config
from celery import Celery

from devstack.s3server import RcloneS3
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from workers.state.jobs import JobStore

TOKEN = "integration-test-token"
BUCKET = "test-exports"
SANDBOX_CONTACTS = 3000


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def store(redis_url: str) -> Iterator[JobStore]:
    """The job records the workers keep, read as they read them (a module may name its own)."""
    client = redis.Redis.from_url(redis_url)
    yield JobStore(client)
    client.close()


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if os.environ.get("S3_ENDPOINT_URL"):
        yield {
            name: os.environ[name]
            for name in ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        } | {"AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
        return
    with RcloneS3(tmp_path_factory.mktemp("s3") / "data") as server:
        yield server.env()


@pytest.fixture(scope="session")
def s3(s3_env: dict[str, str]) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=s3_env["S3_ENDPOINT_URL"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
        region_name=s3_env["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    except client.exceptions.ClientError as error:
        if "BucketAlreadyExists" not in str(error):
            raise
    return client


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(
        tokens=[TOKEN], contacts=SANDBOX_CONTACTS, processing_seconds=1.0, rate_limit=0
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_sandbox_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        server: SandboxProcess = request.getfixturevalue("sandbox")
        server.clear_faults()
        server.set_processing_seconds(1.0)


@pytest.fixture(scope="session")
def worker_env(
    redis_url: str, s3_env: dict[str, str], s3: Any, sandbox: SandboxProcess
) -> dict[str, str]:
    """Everything a worker needs; depending on ``s3`` makes sure the bucket exists."""
    return {
        **s3_env,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "CC_API_BASE_URL": sandbox.api_base,
        "CC_ACCESS_TOKEN": TOKEN,
        "S3_BUCKET": BUCKET,
        "S3_PART_SIZE_MIB": "5",
        "POLL_INITIAL_SECONDS": "0.3",
        "POLL_MAX_SECONDS": "1.0",
        "RETRY_INITIAL_SECONDS": "0.2",
        "RETRY_MAX_SECONDS": "1.0",
        "RETRY_MAX_ATTEMPTS": "3",
    }


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture(scope="module")
def start_worker(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerFactory]:
    """Workers started in a module stop when it ends, so each module controls who consumes."""
    started: list[WorkerProcess] = []
    logs = tmp_path_factory.mktemp("worker-logs")

    def start(concurrency: int = 1, **env: str) -> WorkerProcess:
        name = f"w{len(started)}-{uuid.uuid4().hex[:6]}"
        worker = WorkerProcess(
            {**worker_env, **env}, logs / f"{name}.log", name=name, concurrency=concurrency
        )
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def worker(start_worker: WorkerFactory) -> WorkerProcess:
    """One worker with a single slot: every export test also proves polling holds no slot."""
    return start_worker(concurrency=1)


@pytest.fixture(scope="session")
def client(redis_url: str) -> Iterator[Celery]:
    """A caller exactly as CONTRACT.md §1 shows it: no import of this project."""
    app = Celery(broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", accept_content=["json"], result_accept_content=["json"])
    yield app
    app.close()


@pytest.fixture
def object_bytes(s3: Any) -> Callable[[str, str], bytes]:
    def read(bucket: str, key: str) -> bytes:
        data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    return read
