"""Real parts for integration tests: Redis, an S3 server, the sandbox and celery workers.

Redis is the machine's server (TEST_REDIS_URL, default db 14 on 127.0.0.1:6379), flushed before
and after; each pytest-xdist process takes a database of its own (``tests.redisdb``). S3 is
``rclone serve s3`` on a free port unless S3_ENDPOINT_URL names another server.

Most tests run the export's steps in this process (``services``, ``tests.integration.chain``).
Real ``celery worker`` processes serve the tests whose point is a process boundary: one shared
worker (``worker``) for the caller's view of the contract, and workers of a module's own
(``start_worker``) where workers are killed, raced, restarted or counted against each other.
Modules run in that order — in-process, shared worker, own workers — so the shared worker is
started once, and stopped before any module starts workers of its own (each module controls who
consumes the queue).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import redis
from botocore.config import Config
from celery import Celery

from devstack.ports import free_port
from devstack.s3server import RcloneS3, S3Server, plain_client
from devstack.seaweedfs import SeaweedS3
from devstack.worker import WorkerProcess, stop_all
from sandbox.testing import SandboxProcess
from tests.integration.chain import Outbox
from tests.integration.helpers import download_step
from tests.redisdb import redis_url_for
from workers.constant_contact.client import ConstantContactClient, StaticToken
from workers.export.job import Job
from workers.s3.objectmeta import EncodingCheck
from workers.s3.storage import StoredObject, make_s3_client
from workers.services import Services, build_services
from workers.settings import Settings
from workers.state.jobs import JobStore
from workers.transfer import TransferSummary

TOKEN = "integration-test-token"
BUCKET = "test-exports"
SANDBOX_CONTACTS = 3000
#: Seconds the sandbox takes to finish an activity, unless a test says otherwise: about one
#: poll's wait (POLL_INITIAL_SECONDS).
PROCESSING_SECONDS = 0.3


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = redis_url_for("TEST_REDIS_URL", 14)
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


@dataclass(frozen=True)
class Store:
    """An S3 server the tests write to: its name, what a worker needs to reach it (``env``)
    and a plain client for checking what it stored. ``BUCKET`` exists on it."""

    name: str
    env: dict[str, str]
    client: Any


def open_store(name: str, env: dict[str, str]) -> Store:
    client = plain_client(
        env,
        Config(
            # rclone over https answers boto3's default PutObject (an unsigned aws-chunked body
            # with a CRC32 trailer, which boto3 sends only over https) with 400
            # MissingContentLength. The workers' own uploads are not affected (they pass on
            # every store, over http and https); this plain client writes only as "someone
            # else" in tests, so it sends no checksum it was not asked for.
            request_checksum_calculation="when_required",
        ),
    )
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    except client.exceptions.ClientError as error:
        if "BucketAlreadyExists" not in str(error):
            raise
    return Store(name, env, client)


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The default store: ``rclone serve s3``, or the server S3_ENDPOINT_URL names."""
    if os.environ.get("S3_ENDPOINT_URL"):
        yield {
            name: os.environ[name]
            for name in ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        } | {"AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
        return
    with RcloneS3(tmp_path_factory.mktemp("s3") / "data") as server:
        yield server.env()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS over http for every module that needs a store that checks checksums (it
    takes seconds to start). Each bucket takes volumes of its own (devstack.seaweedfs), so
    modules share ``BUCKET`` on it unless they need a bucket's own settings."""
    root = tmp_path_factory.mktemp("seaweedfs")
    with SeaweedS3(root / "data", root / "seaweedfs.log") as server:
        yield server


@pytest.fixture(scope="session")
def rclone_store(s3_env: dict[str, str]) -> Store:
    return open_store("rclone", s3_env)


@pytest.fixture(scope="session")
def seaweedfs_store(seaweedfs: SeaweedS3) -> Store:
    return open_store("seaweedfs", seaweedfs.env())


@pytest.fixture(scope="session")
def https_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Store]]:
    """The server of a kind (``rclone``, ``seaweedfs``) over https, with a certificate from a
    CA of its own, started on first use and kept for the session."""
    started: dict[str, Store] = {}
    with contextlib.ExitStack() as stack:

        def get(kind: str) -> Store:
            if kind not in started:
                root = tmp_path_factory.mktemp(f"{kind}-https")
                server = SERVERS[kind](root / "data", root / "server.log", tls=True)
                stack.enter_context(server)
                started[kind] = open_store(f"{kind}+https", server.env())
            return started[kind]

        yield get


SERVERS: dict[str, type[S3Server]] = {"rclone": RcloneS3, "seaweedfs": SeaweedS3}
#: The stores a ``both_stores`` module runs on: rclone checks no CRC32 and keeps aws-chunked;
#: SeaweedFS checks every checksum the worker sends (part CRC32, Content-MD5, trailers); each
#: over http and over https (where boto3 leaves the payload unsigned, TLS protecting it).
STORES = ("rclone", "seaweedfs", "rclone+https", "seaweedfs+https")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_stores: the module runs once on each S3 server, over http and https",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked ``both_stores`` runs whole on each store in turn: every one of STORES,
    or those the marker names (``both_stores("rclone", "seaweedfs")``: what https adds to a
    store is proven elsewhere)."""
    marker = metafunc.definition.get_closest_marker("both_stores")
    if "s3_store" in metafunc.fixturenames and marker:
        metafunc.parametrize("s3_store", marker.args or STORES, indirect=True, scope="module")


@pytest.fixture(scope="module")
def s3_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The store a module's steps write to: rclone unless the module is ``both_stores``. Over
    https the module's process trusts the store's CA as docs/operations.md tells a worker to
    (AWS_CA_BUNDLE), so the clients the workers make trust it too."""
    kind, _, scheme = str(getattr(request, "param", "rclone")).partition("+")
    store: Store = (
        request.getfixturevalue("https_store")(kind)
        if scheme == "https"
        else request.getfixturevalue(f"{kind}_store")
    )
    with pytest.MonkeyPatch.context() as patch:
        if "AWS_CA_BUNDLE" in store.env:
            patch.setenv("AWS_CA_BUNDLE", store.env["AWS_CA_BUNDLE"])
        yield store


@pytest.fixture(scope="module")
def s3(s3_store: Store) -> Any:
    """A plain client of the module's store, for checking what was stored."""
    return s3_store.client


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(
        tokens=[TOKEN],
        contacts=SANDBOX_CONTACTS,
        processing_seconds=PROCESSING_SECONDS,
        rate_limit=0,
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_sandbox_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        server: SandboxProcess = request.getfixturevalue("sandbox")
        server.clear_faults()
        server.configure(
            processing_seconds=PROCESSING_SECONDS,
            progress_curve="linear",
            timestamp_resolution="millis",
        )


@pytest.fixture(scope="session")
def worker_env(redis_url: str, rclone_store: Store, sandbox: SandboxProcess) -> dict[str, str]:
    """Everything a worker needs, on the default store (where ``BUCKET`` exists)."""
    return {
        **rclone_store.env,
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


class Workers:
    """Starts workers, and lets them all go."""

    def __init__(self, env: dict[str, str], logs: Any) -> None:
        self.env = env
        self.logs = logs
        self.started: list[WorkerProcess] = []

    def __call__(self, concurrency: int = 1, **env: str) -> WorkerProcess:
        [worker] = self.many(1, concurrency, **env)
        return worker

    def many(self, count: int, concurrency: int = 1, **env: str) -> list[WorkerProcess]:
        """``count`` workers alike, booted side by side."""
        workers = [self._worker(concurrency, env).spawn() for _ in range(count)]
        for worker in workers:
            worker.wait_ready()
        return workers

    def _worker(self, concurrency: int, env: dict[str, str]) -> WorkerProcess:
        name = f"w{len(self.started)}-{uuid.uuid4().hex[:6]}"
        worker = WorkerProcess(
            {**self.env, **env}, self.logs / f"{name}.log", name=name, concurrency=concurrency
        )
        self.started.append(worker)
        return worker

    def leave(self) -> None:
        """Let them all go without waiting: each stops consuming at once, and takes about 2 s
        to finish what it holds (``stop`` at the end of the session waits for them)."""
        for worker in self.started:
            worker.leave()


WorkerFactory = Workers


class SharedWorker:
    """One worker with a single slot for the tests of the caller's view, started on first use
    and kept across modules: every export it completes while another waits on its activity
    shows that polling holds no slot. Its metrics endpoint is on (``metrics_port``)."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.current: WorkerProcess | None = None

    def get(self) -> WorkerProcess:
        if self.current is None:
            self.current = self.workers(concurrency=1)
        return self.current

    def leave(self) -> None:
        self.workers.leave()
        self.current = None


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """The shared worker's Prometheus endpoint."""
    return free_port()


@pytest.fixture(scope="session")
def every_worker() -> Iterator[list[Workers]]:
    """Every group of workers the session started: all are stopped, and waited for, at its
    end."""
    groups: list[Workers] = []
    yield groups
    stop_all([worker for workers in groups for worker in workers.started])


@pytest.fixture(scope="session")
def shared_worker(
    worker_env: dict[str, str],
    metrics_port: int,
    every_worker: list[Workers],
    tmp_path_factory: pytest.TempPathFactory,
) -> SharedWorker:
    env = {**worker_env, "METRICS_PORT": str(metrics_port)}
    workers = Workers(env, tmp_path_factory.mktemp("shared-worker-logs"))
    every_worker.append(workers)
    return SharedWorker(workers)


@pytest.fixture
def worker(shared_worker: SharedWorker) -> WorkerProcess:
    """The shared worker (see SharedWorker)."""
    return shared_worker.get()


@pytest.fixture(scope="module")
def start_worker(
    worker_env: dict[str, str],
    shared_worker: SharedWorker,
    every_worker: list[Workers],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workers]:
    """Workers started in a module stop consuming when it ends, so each module controls who
    consumes: the shared worker stops first."""
    shared_worker.leave()
    workers = Workers(worker_env, tmp_path_factory.mktemp("worker-logs"))
    every_worker.append(workers)
    yield workers
    workers.leave()


@pytest.fixture(scope="session")
def client(redis_url: str) -> Iterator[Celery]:
    """A caller exactly as docs/contract.md §1 shows it: no import of this project."""
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


@pytest.fixture(scope="session")
def results_app(redis_url: str) -> Iterator[Celery]:
    """Where the in-process steps store PROGRESS: a result backend on the test Redis, configured
    as the workers' (celeryconfig)."""
    app = Celery("contact_exports", broker=redis_url, backend=redis_url)
    app.conf.update(
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_extended=False,
    )
    yield app
    app.close()


SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="module")
def make_settings(worker_env: dict[str, str], s3_store: Store) -> SettingsFactory:
    """The settings a worker reads from ``worker_env`` on the module's store, with ``changes``
    (field names)."""

    def make(**changes: Any) -> Settings:
        env = worker_env | s3_store.env
        values = {name.lower(): value for name, value in env.items()}
        return Settings(**{**values, **changes})

    return make


@pytest.fixture(scope="module")
def worker_s3(s3_store: Store, make_settings: SettingsFactory) -> Any:
    """An S3 client of the module's store, made as the workers make theirs
    (``make_s3_client``)."""
    session = boto3.Session(
        aws_access_key_id=s3_store.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_store.env["AWS_SECRET_ACCESS_KEY"],
    )
    return make_s3_client(make_settings(), session)


ServicesFactory = Callable[..., Services]


@pytest.fixture
def make_services(
    make_settings: SettingsFactory, results_app: Celery, worker_s3: Any
) -> Iterator[ServicesFactory]:
    """What a worker process builds (``build_services``) on the same Redis, S3 server and
    sandbox, from the workers' settings with ``changes``; the messages its steps send land in
    an ``Outbox`` (``tests.integration.chain``)."""
    built: list[Services] = []

    def make(**changes: Any) -> Services:
        services = build_services(
            make_settings(**changes),
            sender=Outbox(),
            results=results_app.backend,
            s3=worker_s3,
        )
        built.append(services)
        return services

    yield make
    for services in built:
        services.redis.close()


@pytest.fixture
def services(make_services: ServicesFactory) -> Services:
    return make_services()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In-process modules first, then those of the shared worker, then those that start their
    own workers (which stop the shared one); modules stay whole, in their order within each."""
    here = os.path.dirname(__file__)
    slots = [n for n, item in enumerate(items) if str(item.path).startswith(here)]
    group: dict[str, int] = {}
    for n in slots:
        item = items[n]
        names = getattr(item, "fixturenames", ())
        kind = 2 if "start_worker" in names else 1 if "worker" in names else 0
        group[str(item.path)] = max(group.get(str(item.path), 0), kind)
    ordered = sorted((items[n] for n in slots), key=lambda item: group[str(item.path)])
    for n, item in zip(slots, ordered, strict=True):
        items[n] = item


# -- the download step run in-process (test_downloading_*, test_stores_without_streaming_put) ---

#: The download step's body for a job (and, optionally, what the process knows of its store).
Download = Callable[..., tuple[TransferSummary, StoredObject]]


@pytest.fixture
def api(sandbox: SandboxProcess) -> ConstantContactClient:
    """The worker's API client on the sandbox, for tests that start from a completed activity
    (``helpers.completed_job``): the sandbox finishes each almost at once."""
    sandbox.set_processing_seconds(0.1)
    return ConstantContactClient(sandbox.api_base, StaticToken(TOKEN))


@pytest.fixture
def owned(redis_url: str) -> Iterator[redis.Redis]:
    """A Redis client for the records the create step keeps (the activities it owns)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def encoding() -> EncodingCheck:
    """What the process learns of its store's handling of one-PUT uploads (a new process)."""
    return EncodingCheck()


@pytest.fixture
def stream(
    api: ConstantContactClient,
    s3: Any,
    store: JobStore,
    settings: Settings,
    encoding: EncodingCheck,
) -> Download:
    """Run the download step's body for a job, as ``download_csv`` does under its lease, with
    the test module's ``settings`` (and ``s3``, where it makes its own). There is no shared
    ``settings`` fixture: a module that asks for ``stream`` defines one (how its exports go)."""

    def run(job: Job, process: EncodingCheck = encoding) -> tuple[TransferSummary, StoredObject]:
        """``process``: what the process running the step knows of its store."""
        return download_step(job, api=api, s3=s3, store=store, settings=settings, encoding=process)

    return run
