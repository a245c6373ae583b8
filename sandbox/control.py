"""The ``/__sandbox__`` control API used by tests, demos and benchmarks.

It needs no token and is never rate-limited, faulted or written to the request
log: it is the test's side channel, and must not perturb what it observes.
Errors here use a plain ``{"error": ...}`` body to stay visibly different from
the emulated Constant Contact errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sandbox.activities import CURVES, RESOLUTIONS
from sandbox.exportspec import UUID_PATTERN
from sandbox.faults import FaultRuleError
from sandbox.state import SandboxState
from sandbox.wire import Endpoint, Request, Response, json_response

CONTROL_PREFIX = "/__sandbox__"
CATALOG_SAMPLE_SIZE = 20


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        body = json.loads(request.body)
    except ValueError as exc:
        raise ControlError(400, f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def _ok(body: Any, status: int = 200) -> Response:
    return json_response(status, body, endpoint=Endpoint.CONTROL)


def _health(state: SandboxState, request: Request) -> Response:
    return _ok({"status": "ok"})


def _list_faults(state: SandboxState, request: Request) -> Response:
    return _ok({"rules": state.faults.snapshot()})


def _add_faults(state: SandboxState, request: Request) -> Response:
    rules = _body(request).get("rules")
    if not isinstance(rules, list):
        raise ControlError(400, 'expected {"rules": [RULE, ...]}')
    try:
        added = state.faults.add(rules)
    except FaultRuleError as exc:
        raise ControlError(400, str(exc)) from exc
    return _ok({"rules": [rule.to_json() for rule in added]}, 201)


def _clear_faults(state: SandboxState, request: Request) -> Response:
    return _ok({"cleared": state.faults.clear()})


def _non_negative(body: dict[str, Any], name: str, *, integer: bool = True) -> Any:
    value = body[name]
    kinds: tuple[type[int] | type[float], ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        kind = "integer" if integer else "number"
        raise ControlError(400, f"{name} must be a non-negative {kind}")
    return value


def _set_choices(state: SandboxState, body: dict[str, Any]) -> None:
    """The knobs that take one of a few words: how progress rises, how fine timestamps are."""
    for name, allowed in (("progress_curve", CURVES), ("timestamp_resolution", RESOLUTIONS)):
        if name in body:
            if body[name] not in allowed:
                raise ControlError(400, f"{name} must be one of {', '.join(allowed)}")
            setattr(state.settings, name, body[name])


def _config(state: SandboxState, request: Request) -> Response:
    """Change runtime knobs; processing_seconds applies to activities created afterwards."""
    body = _body(request)
    known = {
        "processing_seconds",
        "rate_limit",
        "daily_quota",
        "max_queued",
        "chunked",
        "progress_curve",
        "timestamp_resolution",
    }
    if set(body) - known:
        raise ControlError(400, f"unknown settings: {sorted(set(body) - known)}")
    if "processing_seconds" in body:
        state.settings.processing_seconds = float(
            _non_negative(body, "processing_seconds", integer=False)
        )
    if "rate_limit" in body:
        state.limiter.per_second = _non_negative(body, "rate_limit")
    if "daily_quota" in body:
        state.limiter.per_day = _non_negative(body, "daily_quota")
    if "max_queued" in body:
        state.settings.max_queued = _non_negative(body, "max_queued")
    if "chunked" in body:
        if not isinstance(body["chunked"], bool):
            raise ControlError(400, "chunked must be a boolean")
        state.settings.chunked = body["chunked"]
    _set_choices(state, body)
    return _ok(
        {
            "processing_seconds": state.settings.processing_seconds,
            "rate_limit": state.limiter.per_second,
            "daily_quota": state.limiter.per_day,
            "max_queued": state.settings.max_queued,
            "chunked": state.settings.chunked,
            "progress_curve": state.settings.progress_curve,
            "timestamp_resolution": state.settings.timestamp_resolution,
        }
    )


def _expire_tokens(state: SandboxState, request: Request) -> Response:
    token = _body(request).get("token")
    if token is not None and not isinstance(token, str):
        raise ControlError(400, "token must be a string")
    return _ok({"expired": state.tokens.expire(token)})


def _requests(state: SandboxState, request: Request) -> Response:
    endpoint = request.query_value("endpoint") or None
    activity_id = request.query_value("activity_id") or None
    return _ok(state.log.query(endpoint, activity_id))


def _summary(state: SandboxState, request: Request) -> Response:
    return _ok(state.log.summary())


def _catalog(state: SandboxState, request: Request) -> Response:
    universe = state.universe
    sample = min(CATALOG_SAMPLE_SIZE, universe.size)
    return _ok(
        {
            "contacts": universe.size,
            "seed": universe.seed,
            "lists": list(universe.lists),
            "tags": list(universe.tags),
            "segments": list(universe.segments),
            "sample_contact_ids": [universe.contact_id(i) for i in range(sample)],
            "unknown_contact_id": universe.unknown_contact_id,
        }
    )


def _reset(state: SandboxState, request: Request) -> Response:
    state.reset()
    return _ok({"reset": True})


def _export_info(state: SandboxState, file_export_id: str) -> Response:
    if not UUID_PATTERN.match(file_export_id):
        raise ControlError(400, "not a UUID")
    activity = state.activities.by_file_id(file_export_id)
    if activity is None:
        raise ControlError(404, f"no export with file_export_id {file_export_id}")
    job = activity.job
    if job is None or job.info is None:
        raise ControlError(409, "the export file is not (yet) rendered")
    return _ok(job.info.to_json())


Route = Callable[[SandboxState, Request], Response]

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/health"): _health,
    ("GET", "/faults"): _list_faults,
    ("POST", "/faults"): _add_faults,
    ("DELETE", "/faults"): _clear_faults,
    ("POST", "/config"): _config,
    ("POST", "/tokens/expire"): _expire_tokens,
    ("GET", "/requests"): _requests,
    ("GET", "/requests/summary"): _summary,
    ("GET", "/catalog"): _catalog,
    ("POST", "/reset"): _reset,
}
EXPORTS_PREFIX = "/exports/"


def handle_control(state: SandboxState, request: Request) -> Response:
    sub = request.path[len(CONTROL_PREFIX) :].rstrip("/") or "/"
    try:
        route = ROUTES.get((request.method, sub))
        if route is not None:
            return route(state, request)
        if request.method == "GET" and sub.startswith(EXPORTS_PREFIX):
            return _export_info(state, sub[len(EXPORTS_PREFIX) :])
        if any(path == sub for _, path in ROUTES):
            raise ControlError(405, f"{request.method} is not allowed on {request.path}")
        raise ControlError(404, f"no control endpoint {request.path}")
    except ControlError as exc:
        return _ok({"error": str(exc)}, exc.status)
