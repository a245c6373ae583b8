"""Request routing and the order of checks every API request goes through.

Order: route -> authenticate -> rate limit -> fault rules -> operation.  Auth and
rate limiting come before faults so an injected fault is consumed only by a
request the real service would have accepted; faults come before the operation
so a faulted request has no side effect (unless the rule says ``process``, which
models "the service did it but the response was lost").
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import api
from sandbox.control import CONTROL_PREFIX, handle_control
from sandbox.faults import FaultPlan
from sandbox.ratelimit import Verdict
from sandbox.state import SandboxState
from sandbox.tokens import fingerprint
from sandbox.wire import (
    Endpoint,
    ErrorKey,
    Request,
    Response,
    error_response,
    json_response,
)

API_PREFIX = "/v3"
TOKEN_PATH = "/oauth2/default/v1/token"  # noqa: S105 - a URL path
CREATE_PATH = "/v3/activities/contact_exports"
ACTIVITIES_PATH = "/v3/activities"
ACTIVITY_PREFIX = "/v3/activities/"
RESULTS_PREFIX = "/v3/contact_exports/"


@dataclass(frozen=True)
class Route:
    endpoint: Endpoint
    method: str
    param: str | None = None


def route(path: str) -> Route | None:
    """Map a path to its operation; the method is checked by the caller (405 vs 404)."""
    path = path.rstrip("/") or "/"
    if path == TOKEN_PATH:
        return Route(Endpoint.TOKEN, "POST")
    if path == CREATE_PATH:
        return Route(Endpoint.CREATE_EXPORT, "POST")
    if path == ACTIVITIES_PATH:
        return Route(Endpoint.LIST_ACTIVITIES, "GET")
    for prefix, endpoint in (
        (ACTIVITY_PREFIX, Endpoint.GET_ACTIVITY),
        (RESULTS_PREFIX, Endpoint.GET_RESULTS),
    ):
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            return Route(endpoint, "GET", path[len(prefix) :])
    return None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def fault_response(plan: FaultPlan, endpoint: Endpoint) -> Response:
    """The error a status fault produces, in the body shape the endpoint would use."""
    status = plan.status or 500
    if endpoint is Endpoint.TOKEN and status in (400, 401):
        body = {
            "error": plan.error_key or ("invalid_client" if status == 401 else "invalid_grant"),
            "error_description": plan.error_message or "Injected fault",
        }
        return json_response(status, body)
    return error_response(status, plan.error_key, plan.error_message)


class SandboxApp:
    """Turns a :class:`Request` into a :class:`Response`; no socket I/O happens here."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def handle(self, request: Request) -> Response:
        if request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
            return handle_control(self.state, request)
        target = route(request.path)
        token_id: str | None = None
        if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
            refused, token_id = self._admit(request)
            if refused is not None:
                refused.endpoint = target.endpoint if target else Endpoint.UNKNOWN
                return refused
        if target is None:
            return error_response(
                404, ErrorKey.NOT_FOUND, f"No resource at {request.path}", token_id=token_id
            )
        if request.method != target.method:
            return error_response(
                405,
                ErrorKey.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {request.path}",
                endpoint=target.endpoint,
                token_id=token_id,
                headers={"Allow": target.method},
            )
        response = self._faulted(target, request)
        response.endpoint = target.endpoint
        response.token_id = response.token_id or token_id
        return response

    def _admit(self, request: Request) -> tuple[Response | None, str | None]:
        """Authenticate and rate-limit; refused requests count nowhere and change nothing."""
        token = bearer_token(request)
        token_id = fingerprint(token) if token else None
        if token is None or not self.state.tokens.is_valid(token):
            return error_response(
                401, ErrorKey.UNAUTHORIZED, "Unauthorized", token_id=token_id
            ), token_id
        assert token_id is not None
        verdict = self.state.limiter.check(token_id)
        if verdict is Verdict.THROTTLED:
            message = f"Too many requests: more than {self.state.limiter.per_second} per second"
            return error_response(429, ErrorKey.THROTTLED, message, token_id=token_id), token_id
        if verdict is Verdict.QUOTA_EXCEEDED:
            message = f"Daily quota of {self.state.limiter.per_day} requests exceeded"
            return error_response(
                429, ErrorKey.QUOTA_EXCEEDED, message, token_id=token_id
            ), token_id
        return None, token_id

    def _faulted(self, target: Route, request: Request) -> Response:
        plan = self.state.faults.plan_for(target.endpoint)
        if plan.status is not None and not plan.process:
            response = fault_response(plan, target.endpoint)
        else:
            response = self._operate(target, request, plan)
            if plan.status is not None:
                processed = response
                response = fault_response(plan, target.endpoint)
                response.activity_id = processed.activity_id
                response.file_export_id = processed.file_export_id
                response.token_id = processed.token_id
        delivery = response.delivery
        delivery.delay_first_byte = plan.delay_first_byte
        delivery.bytes_per_second = plan.bytes_per_second
        delivery.drop_after_bytes = plan.drop_after_bytes
        response.fault_ids = plan.rule_ids
        return response

    def _operate(self, target: Route, request: Request, plan: FaultPlan) -> Response:
        state = self.state
        if target.endpoint is Endpoint.CREATE_EXPORT:
            return api.create_export(state, request, plan)
        if target.endpoint is Endpoint.LIST_ACTIVITIES:
            return api.list_activities(state, request)
        if target.endpoint is Endpoint.GET_ACTIVITY:
            return api.get_activity(state, target.param or "")
        if target.endpoint is Endpoint.GET_RESULTS:
            return api.get_results(state, target.param or "")
        return api.token(state, request)
