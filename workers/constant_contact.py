"""Constant Contact v3 API client for the three export calls.

It turns every answer into either data or one of the errors in workers.exceptions, so the tasks
decide only *when* to try again, never *what* an answer means. It follows links only on the
configured API host: a link elsewhere would carry our bearer token to a stranger.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from workers.download import ResultsBody
from workers.exceptions import (
    ConstantContactError,
    TransientApiError,
    TransientError,
)

#: Statuses that a later attempt may not meet (Constant Contact documents 500 and 503).
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: One safe path segment: what activity and file ids look like, and nothing that changes the path.
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
USER_AGENT = "contact-export-worker/0.1"


class ActivityState(StrEnum):
    INITIALIZED = "initialized"
    PROCESSING = "processing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self not in (ActivityState.INITIALIZED, ActivityState.PROCESSING)


@dataclass(frozen=True)
class Activity:
    activity_id: str
    state: ActivityState
    percent_done: int
    self_href: str
    results_href: str | None
    activity_errors: list[str] = field(default_factory=list)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Activity:
        try:
            links = body.get("_links") or {}
            results = links.get("results") or {}
            return cls(
                activity_id=str(body["activity_id"]),
                state=ActivityState(body["state"]),
                percent_done=int(body.get("percent_done") or 0),
                self_href=str(links["self"]["href"]),
                results_href=str(results["href"]) if results.get("href") else None,
                activity_errors=[_error_text(e) for e in body.get("activity_errors") or []],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConstantContactError(f"unexpected activity body: {error!r}") from error


class TokenSource(Protocol):
    """Where the client gets its bearer token; issue-specific sources (refresh, Redis) plug in."""

    def access_token(self) -> str: ...


@dataclass(frozen=True)
class StaticToken:
    token: str

    def access_token(self) -> str:
        return self.token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


class ConstantContactClient:
    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        session: requests.Session | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"API base URL must be http(s)://host/...: {base_url!r}")
        self._base = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc)
        self._tokens = tokens
        self._session = session or requests.Session()
        self._timeout = (connect_timeout, read_timeout)

    def create_export(self, body: Mapping[str, Any]) -> Activity:
        response = self._request("POST", f"{self._base}/activities/contact_exports", json=body)
        return Activity.from_body(_json(response))

    def get_activity(self, href: str) -> Activity:
        response = self._request("GET", self.resolve(href))
        return Activity.from_body(_json(response))

    @contextmanager
    def open_results(self, href: str) -> Iterator[ResultsBody]:
        response = self._request(
            "GET", self.resolve(href), headers={"Accept": "text/csv"}, stream=True
        )
        try:
            length = response.headers.get("Content-Length")
            yield ResultsBody(response, int(length) if length and length.isdigit() else None)
        finally:
            response.close()

    def resolve(self, href: str) -> str:
        """An absolute URL for a link of the API, refusing any other host or an odd path."""
        parts = urlsplit(href)
        if (parts.scheme or parts.netloc) and (parts.scheme, parts.netloc) != self._origin:
            raise ConstantContactError(
                f"refusing to follow a link off the API host: {parts.scheme}://{parts.netloc}"
            )
        segments = parts.path.split("/")[1:]
        safe = all(_SEGMENT.match(s) and s not in (".", "..") for s in segments)
        if not parts.path.startswith("/") or not safe:
            raise ConstantContactError(f"refusing to follow a malformed API link: {href!r}")
        if parts.query or parts.fragment:
            raise ConstantContactError(f"refusing to follow a malformed API link: {href!r}")
        scheme, netloc = self._origin
        return f"{scheme}://{netloc}{parts.path}"

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._tokens.access_token()}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **kwargs.pop("headers", {}),
        }
        try:
            response = self._session.request(
                method, url, headers=headers, timeout=self._timeout, **kwargs
            )
        except requests.Timeout as error:
            raise TransientError(f"{method} {urlsplit(url).path} timed out") from error
        except requests.ConnectionError as error:
            raise TransientError(f"{method} {urlsplit(url).path}: connection failed") from error
        if response.status_code >= 400:
            try:
                raise_for_status(response)
            finally:
                response.close()
        return response


def raise_for_status(response: requests.Response) -> None:
    """Map an error answer to the exception that says whether trying again can help."""
    status = response.status_code
    error_key, message = parse_error_body(response)
    path = urlsplit(response.url).path if response.url else ""
    text = f"{response.request.method if response.request else ''} {path}: {status}"
    text += f" {error_key}" if error_key else ""
    text += f": {message}" if message else ""
    if status in RETRYABLE_STATUSES:
        raise TransientApiError(
            text,
            status=status,
            error_key=error_key,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    raise ConstantContactError(text, status=status, error_key=error_key)


def parse_error_body(response: requests.Response) -> tuple[str | None, str | None]:
    """Constant Contact sends ``[{error_key, error_message}]``, a single such object, or OAuth's
    ``{error, error_description}``; anything else is reported as raw text, shortened."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200] or None
    first = body[0] if isinstance(body, list) and body else body
    if not isinstance(first, dict):
        return None, None
    key = first.get("error_key") or first.get("error")
    message = first.get("error_message") or first.get("error_description")
    return (str(key) if key else None), (str(message) if message else None)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise ConstantContactError(f"expected JSON, got {response.text[:100]!r}") from error
    if not isinstance(body, dict):
        raise ConstantContactError("expected a JSON object")
    return body


def _error_text(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("message") or item.get("error_message") or item)
    return str(item)
