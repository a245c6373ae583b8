"""Values passed between the routing logic and the socket writer.

Handlers return a :class:`Response` instead of writing to the socket so that
fault injection (delays, slow bodies, dropped connections) is applied in one
place, the writer, identically for every endpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from typing import Any

JSON_CONTENT_TYPE = "application/json"
CSV_CONTENT_TYPE = "text/csv"

SINGLE_OBJECT_STATUSES = frozenset({401, 429})
"""Constant Contact answers 401 and 429 with one error object, everything else with an array."""


class Endpoint(StrEnum):
    """Names used by fault rules and the request log to address an API operation."""

    CREATE_EXPORT = "create_export"
    GET_ACTIVITY = "get_activity"
    LIST_ACTIVITIES = "list_activities"
    GET_RESULTS = "get_results"
    TOKEN = "token"  # noqa: S105 - an endpoint name
    CONTROL = "control"
    UNKNOWN = "unknown"


API_ENDPOINTS = frozenset(
    {
        Endpoint.CREATE_EXPORT,
        Endpoint.GET_ACTIVITY,
        Endpoint.LIST_ACTIVITIES,
        Endpoint.GET_RESULTS,
        Endpoint.TOKEN,
    }
)
"""Endpoints a fault rule may target; control and unrouted requests are never faulted."""


class ErrorKey(StrEnum):
    """``error_key`` values, mirroring Constant Contact's dotted lowercase style."""

    BAD_REQUEST = "bad.request"
    MALFORMED_JSON = "malformed.json"
    INVALID_VALUE = "invalid.value"
    TOO_MANY_ITEMS = "too.many.items"
    MUTUALLY_EXCLUSIVE = "mutually.exclusive"
    UNKNOWN_PROPERTY = "unknown.property"
    INVALID_ID = "invalid.id"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not.found"
    METHOD_NOT_ALLOWED = "method.not.allowed"
    LENGTH_REQUIRED = "length.required"
    REQUEST_TOO_LARGE = "request.too.large"
    THROTTLED = "throttled"
    QUOTA_EXCEEDED = "quota_exceeded"
    SERVER_ERROR = "server.error"
    BAD_GATEWAY = "bad.gateway"
    SERVICE_UNAVAILABLE = "service.unavailable"
    GATEWAY_TIMEOUT = "gateway.timeout"


DEFAULT_ERROR_KEYS: dict[int, str] = {
    400: ErrorKey.BAD_REQUEST,
    401: ErrorKey.UNAUTHORIZED,
    403: ErrorKey.FORBIDDEN,
    404: ErrorKey.NOT_FOUND,
    405: ErrorKey.METHOD_NOT_ALLOWED,
    411: ErrorKey.LENGTH_REQUIRED,
    413: ErrorKey.REQUEST_TOO_LARGE,
    429: ErrorKey.THROTTLED,
    500: ErrorKey.SERVER_ERROR,
    502: ErrorKey.BAD_GATEWAY,
    503: ErrorKey.SERVICE_UNAVAILABLE,
    504: ErrorKey.GATEWAY_TIMEOUT,
}


@dataclass(frozen=True)
class Request:
    """A parsed HTTP request; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class FileBody:
    """A body streamed from disk, so multi-gigabyte exports never enter memory."""

    path: Path
    size: int


@dataclass
class Delivery:
    """How the writer sends the body; the defaults mean "plainly and fast"."""

    delay_first_byte: float = 0.0
    bytes_per_second: int | None = None
    drop_after_bytes: int | None = None
    chunked: bool = False


@dataclass
class Response:
    """A response plus the facts the request log needs about it."""

    status: int
    body: bytes | FileBody = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    endpoint: Endpoint = Endpoint.UNKNOWN
    token_id: str | None = None
    activity_id: str | None = None
    file_export_id: str | None = None
    delivery: Delivery = field(default_factory=Delivery)
    fault_ids: list[int] = field(default_factory=list)

    @property
    def body_size(self) -> int:
        return self.body.size if isinstance(self.body, FileBody) else len(self.body)


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def json_response(status: int, obj: Any, **extra: Any) -> Response:
    return Response(status=status, body=encode_json(obj), **extra)


def default_error_key(status: int) -> str:
    return DEFAULT_ERROR_KEYS.get(status, f"http.{status}")


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def error_body(status: int, key: str | None = None, message: str | None = None) -> Any:
    """Build an error body in the shape Constant Contact uses for ``status``."""
    entry = {
        "error_key": key or default_error_key(status),
        "error_message": message or status_phrase(status),
    }
    return entry if status in SINGLE_OBJECT_STATUSES else [entry]


def error_response(
    status: int, key: str | None = None, message: str | None = None, **extra: Any
) -> Response:
    return json_response(status, error_body(status, key, message), **extra)


def errors_response(status: int, errors: list[tuple[str, str]], **extra: Any) -> Response:
    """An array error body carrying several validation problems at once."""
    body = [{"error_key": key, "error_message": message} for key, message in errors]
    return json_response(status, body, **extra)
