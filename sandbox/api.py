"""The emulated Constant Contact operations: export activities, results, OAuth token.

Each function receives an already authenticated, rate-limited request and
returns a :class:`~sandbox.wire.Response`; status-code faults and delivery
faults are applied around these functions by :mod:`sandbox.app`.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode

from sandbox.activities import FAULT_OUTCOME_ERRORS, Activity, ActivityState
from sandbox.exportspec import UUID_PATTERN, ExportValidationError, parse_export_request
from sandbox.faults import FaultPlan
from sandbox.selection import candidates, unknown_references
from sandbox.state import SandboxState
from sandbox.tokens import OAUTH_SCOPE, OAuthError, fingerprint
from sandbox.wire import (
    CSV_CONTENT_TYPE,
    Delivery,
    Endpoint,
    ErrorKey,
    FileBody,
    Request,
    Response,
    error_response,
    errors_response,
    json_response,
)

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500

LIST_STATE_FILTERS = frozenset({"processing", "completed", "cancelled", "failed", "timed_out"})
"""The swagger's enum for ``GET /activities?state=``: ``initialized`` is not a filter value."""

DECIMAL = re.compile(r"^[0-9]{1,9}\Z")
"""A plain decimal; ``\\Z`` because ``$`` would also match before a trailing newline."""


def create_export(state: SandboxState, request: Request, plan: FaultPlan) -> Response:
    """POST /v3/activities/contact_exports."""
    try:
        spec = parse_export_request(request.body)
    except ExportValidationError as exc:
        return errors_response(400, exc.errors)
    problems = unknown_references(state.universe, spec)
    outcome = plan.activity_outcome or (
        ActivityState.FAILED if problems else ActivityState.COMPLETED
    )
    errors = tuple(problems)
    if plan.activity_outcome is not None:
        errors += (FAULT_OUTCOME_ERRORS[plan.activity_outcome],)
    processing_seconds = state.settings.processing_seconds
    count = len(candidates(state.universe, spec))

    def build(seq: int, now: float) -> Activity:
        job = state.spool.job_for(spec) if outcome is ActivityState.COMPLETED else None
        return Activity(
            activity_id=str(uuid.uuid4()),
            file_export_id=str(uuid.uuid4()),
            seq=seq,
            created_wall=datetime.now(UTC),
            created_mono=now,
            processing_seconds=processing_seconds,
            outcome=outcome,
            errors=errors,
            job=job,
            candidates=count,
            progress_curve=state.settings.progress_curve,
            timestamp_resolution=state.settings.timestamp_resolution,
        )

    activity = state.activities.create_if_room(state.settings.max_queued, build)
    if activity is None:
        return error_response(
            429,
            ErrorKey.THROTTLED,
            f"Too many requests: more than {state.settings.max_queued} queued activities",
        )
    return json_response(
        201,
        activity.to_json(activity.initial_view()),
        activity_id=activity.activity_id,
        file_export_id=activity.file_export_id,
    )


def _bad_id(kind: str, value: str) -> Response:
    return error_response(400, ErrorKey.INVALID_ID, f"{kind} {value!r} is not a valid UUID")


def get_activity(state: SandboxState, activity_id: str) -> Response:
    """GET /v3/activities/{activity_id}; a non-UUID id is a 400, an unknown one a 404."""
    if not UUID_PATTERN.match(activity_id):
        return _bad_id("activity_id", activity_id)
    activity = state.activities.get(activity_id)
    if activity is None:
        return error_response(404, ErrorKey.NOT_FOUND, f"Activity {activity_id} not found")
    view = activity.view(state.activities.clock())
    return json_response(
        200,
        activity.to_json(view),
        activity_id=activity.activity_id,
        file_export_id=activity.file_export_id,
    )


def _parse_limit(raw: str | None) -> int | None:
    if raw is None:
        return DEFAULT_LIST_LIMIT
    if not DECIMAL.match(raw):  # int() would also take " 5", "+5", "5_0" and non-ASCII digits
        return None
    limit = int(raw)
    return limit if 1 <= limit <= MAX_LIST_LIMIT else None


def list_activities(state: SandboxState, request: Request) -> Response:
    """GET /v3/activities?limit=&state=&cursor=, newest first."""
    limit = _parse_limit(request.query_value("limit"))
    if limit is None:
        return error_response(
            400, ErrorKey.INVALID_VALUE, f"limit must be an integer from 1 to {MAX_LIST_LIMIT}"
        )
    raw_state = request.query_value("state")
    if raw_state is not None and raw_state not in LIST_STATE_FILTERS:
        allowed = ", ".join(sorted(LIST_STATE_FILTERS))
        return error_response(400, ErrorKey.INVALID_VALUE, f"state must be one of: {allowed}")
    wanted = ActivityState(raw_state) if raw_state is not None else None
    raw_cursor = request.query_value("cursor")
    if raw_cursor is not None and not DECIMAL.match(raw_cursor):
        return error_response(400, ErrorKey.INVALID_VALUE, "Invalid cursor")
    before = int(raw_cursor) if raw_cursor is not None else None
    page, more = state.activities.newest_first(wanted, limit, before)
    links: dict[str, object] = {}
    if more and page:
        params = {"limit": str(limit), "cursor": str(page[-1][0].seq)}
        if raw_state is not None:
            params["state"] = raw_state
        links["next"] = {"href": f"/v3/activities?{urlencode(params)}"}
    body = {"activities": [a.to_json(view) for a, view in page], "_links": links}
    return json_response(200, body)


def get_results(state: SandboxState, file_export_id: str) -> Response:
    """GET /v3/contact_exports/{file_export_id}.

    Before completion (or for an activity that did not complete) this answers 404
    ``not.found``: the file does not exist yet, and a 404 is what a client polling
    the wrong link too early should learn to treat as "not ready".
    """
    if not UUID_PATTERN.match(file_export_id):
        return _bad_id("file_export_id", file_export_id)
    activity = state.activities.by_file_id(file_export_id)
    if activity is None:
        return error_response(404, ErrorKey.NOT_FOUND, f"Export file {file_export_id} not found")
    ids = {"activity_id": activity.activity_id, "file_export_id": activity.file_export_id}
    view = activity.view(state.activities.clock())
    job = activity.job
    if view.state is not ActivityState.COMPLETED or job is None or job.info is None:
        message = f"Export file {file_export_id} is not available (activity is {view.state.value})"
        return error_response(404, ErrorKey.NOT_FOUND, message, **ids)
    return Response(
        status=200,
        body=FileBody(job.csv_path, job.info.bytes),
        content_type=CSV_CONTENT_TYPE,
        delivery=Delivery(chunked=state.settings.chunked),
        activity_id=activity.activity_id,
        file_export_id=activity.file_export_id,
    )


def _oauth_error(exc: OAuthError) -> Response:
    headers = {"Cache-Control": "no-store"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="sandbox"'
    body = {"error": exc.error, "error_description": exc.description}
    return json_response(exc.status, body, headers=headers, endpoint=Endpoint.TOKEN)


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else (None, None)


def token(state: SandboxState, request: Request) -> Response:
    """POST /oauth2/default/v1/token with the refresh_token grant (Basic or form client auth)."""
    try:
        form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        form = {}

    def field(name: str) -> str | None:
        values = form.get(name)
        return values[-1] if values else None

    client_id, secret = _basic_credentials(request.headers.get("authorization"))
    if client_id is None:
        client_id, secret = field("client_id"), field("client_secret")
    try:
        if field("grant_type") != "refresh_token":
            raise OAuthError(
                400, "unsupported_grant_type", "Only grant_type=refresh_token is supported"
            )
        grant = state.tokens.refresh(client_id, secret, field("refresh_token"))
    except OAuthError as exc:
        return _oauth_error(exc)
    body = {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "scope": OAUTH_SCOPE,
    }
    return json_response(
        200, body, headers={"Cache-Control": "no-store"}, token_id=fingerprint(grant.access_token)
    )
