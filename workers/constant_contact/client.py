"""Constant Contact: the v3 API client for the export calls, and the OAuth2 token endpoint.

It turns every answer into either data or one of the errors in workers.exceptions, so the tasks
decide only *when* to try again, never *what* an answer means. It follows links only on the
configured API host: a link elsewhere would carry our bearer token to a stranger.

Every request first takes a permit from the cluster's request budget (``ratelimit`` beside
this module), and a 401 leads to at most one token refresh and one retry (``tokens``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import requests

from workers.constant_contact.ratelimit import Unlimited
from workers.constant_contact.results import ResultsBody
from workers.exceptions import (
    ConstantContactError,
    RateLimited,
    TransientApiError,
    TransientError,
)

#: Statuses that a later attempt may not meet (Constant Contact documents 500 and 503).
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: One safe path segment: what activity and file ids look like, and nothing that changes the path.
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
USER_AGENT = "contact-export-worker/0.1"
#: The account whose credentials a client uses when none is named.
DEFAULT_ACCOUNT = "default"
#: Seconds every worker pauses after a 429 ``throttled`` that no Retry-After sized: the limiter
#: kept us under our budget, so someone else shares the API key and the server needs room.
THROTTLED_PAUSE_SECONDS = 1.0
#: ``GET /activities`` takes a page size from 1 to 500.
MAX_ACTIVITIES_PAGE = 500
#: Pages read at most when walking the activity list: 10,000 activities, far more than any
#: account creates while one lost create is looked for.
MAX_ACTIVITY_PAGES = 20
#: Seconds to connect to, then to wait for, the OAuth2 token endpoint.
TOKEN_CONNECT_TIMEOUT = 10.0
TOKEN_READ_TIMEOUT = 30.0


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
    #: The server's timestamps, as sent (ISO 8601); see ``epoch_seconds``.
    created_at: str | None = None
    started_at: str | None = None
    updated_at: str | None = None

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
                created_at=_text_or_none(body.get("created_at")),
                started_at=_text_or_none(body.get("started_at")),
                updated_at=_text_or_none(body.get("updated_at")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConstantContactError(f"unexpected activity body: {error!r}") from error


def _text_or_none(value: Any) -> str | None:
    return str(value) if value else None


def epoch_seconds(stamp: str | None) -> tuple[float, float] | None:
    """An API timestamp as (epoch seconds, resolution), or None if absent or unreadable.

    The resolution is what the stamp's truncation may hide: 0.001 for ``…:44.108Z``, 1 for
    ``…:42-05:00`` (the guide's examples show both).
    """
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    digits = re.search(r"T[0-9:]+\.([0-9]+)", stamp)
    return moment.timestamp(), 10.0 ** -len(digits.group(1)) if digits else 1.0


class TokenSource(Protocol):
    """Where the client gets its bearer token (``tokens`` beside this module keeps them in
    Redis)."""

    def access_token(self) -> str: ...

    def refresh(self, rejected: str) -> str:
        """A token other than ``rejected`` (which got a 401), refreshing it if nobody has yet;
        raises ConstantContactError when the account must be re-authorized."""
        ...


class RequestBudget(Protocol):
    """The cluster-wide rate limit (``workers.constant_contact.ratelimit.RateLimiter``)."""

    def acquire(self, account: str) -> None:
        """Return when a request may go out, or raise RateLimited."""
        ...

    def penalize(self, seconds: float) -> None: ...

    def quota_exceeded(self) -> RateLimited: ...


@dataclass(frozen=True)
class StaticToken:
    """A fixed access token with nothing to refresh it: a 401 is final."""

    token: str

    def access_token(self) -> str:
        return self.token

    def refresh(self, rejected: str) -> str:
        raise ConstantContactError(
            "the access token was refused (401) and there is no refresh token to renew it: "
            "re-authorize the account",
            status=401,
            error_key="unauthorized",
        )

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


#: Observes every answer: the endpoint's name (``Endpoint``) and the HTTP status.
AnswerObserver = Callable[[str, int], None]


class Endpoint(StrEnum):
    """The API calls this client makes: the label every answer is counted under."""

    CREATE_EXPORT = "create_export"
    GET_ACTIVITY = "get_activity"
    LIST_ACTIVITIES = "list_activities"
    GET_RESULTS = "get_results"


class ConstantContactClient:
    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        account: str = DEFAULT_ACCOUNT,
        budget: RequestBudget | None = None,
        session: requests.Session | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        on_answer: AnswerObserver | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"API base URL must be http(s)://host/...: {base_url!r}")
        self._base = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc)
        self._tokens = tokens
        self._account = account
        self._budget: RequestBudget = budget or Unlimited()
        self._session = session or requests.Session()
        self._timeout = (connect_timeout, read_timeout)
        self._on_answer = on_answer

    def create_export(self, body: Mapping[str, Any]) -> Activity:
        response = self._request(
            Endpoint.CREATE_EXPORT, "POST", f"{self._base}/activities/contact_exports", json=body
        )
        return Activity.from_body(_json(response))

    def get_activity(self, href: str) -> Activity:
        response = self._request(Endpoint.GET_ACTIVITY, "GET", self.resolve(href))
        return Activity.from_body(_json(response))

    def list_activities(self, limit: int = 50, state: str | None = None) -> list[Activity]:
        """The account's most recent activities of every kind, newest first (one page)."""
        return self._activities_page(self._first_page(limit, state))[0]

    def iter_activities(self, limit: int = MAX_ACTIVITIES_PAGE) -> Iterator[Activity]:
        """Every activity of the account, newest first, a page of ``limit`` at a time.

        Pages are fetched only as the caller reads on (stop reading to stop paging), following
        the API's own ``next`` links, at most ``MAX_ACTIVITY_PAGES`` of them.
        """
        url: str | None = self._first_page(limit, None)
        for _ in range(MAX_ACTIVITY_PAGES):
            if url is None:
                return
            page, url = self._activities_page(url)
            yield from page

    def _first_page(self, limit: int, state: str | None) -> str:
        if not 1 <= limit <= MAX_ACTIVITIES_PAGE:
            raise ValueError(f"limit must be 1..{MAX_ACTIVITIES_PAGE}, not {limit}")
        query = {"limit": str(limit)} | ({"state": ActivityState(state).value} if state else {})
        return f"{self._base}/activities?{urlencode(query)}"

    def _activities_page(self, url: str) -> tuple[list[Activity], str | None]:
        body = _json(self._request(Endpoint.LIST_ACTIVITIES, "GET", url))
        items = body.get("activities") or []
        if not isinstance(items, Sequence) or not all(isinstance(i, Mapping) for i in items):
            raise ConstantContactError("unexpected activities body: 'activities' is not a list")
        links = body.get("_links")
        following = links.get("next") if isinstance(links, Mapping) else None
        href = following.get("href") if isinstance(following, Mapping) else None
        next_url = self.resolve(href, query=True) if isinstance(href, str) and items else None
        return [Activity.from_body(item) for item in items], next_url

    @contextmanager
    def open_results(self, href: str) -> Iterator[ResultsBody]:
        response = self._request(
            Endpoint.GET_RESULTS,
            "GET",
            self.resolve(href),
            headers={"Accept": "text/csv"},
            stream=True,
        )
        try:
            length = response.headers.get("Content-Length")
            yield ResultsBody(response, int(length) if length and length.isdigit() else None)
        finally:
            response.close()

    def resolve(self, href: str, *, query: bool = False) -> str:
        """An absolute URL for a link of the API, refusing any other host or an odd path.

        Only a paging link (``query=True``) may carry a query string, which is kept as given.
        """
        parts = urlsplit(href)
        if (parts.scheme or parts.netloc) and (parts.scheme, parts.netloc) != self._origin:
            raise ConstantContactError(
                f"refusing to follow a link off the API host: {parts.scheme}://{parts.netloc}"
            )
        segments = parts.path.split("/")[1:]
        safe = all(_SEGMENT.match(s) and s not in (".", "..") for s in segments)
        if not parts.path.startswith("/") or not safe:
            raise ConstantContactError(f"refusing to follow a malformed API link: {href!r}")
        if (parts.query and not query) or parts.fragment:
            raise ConstantContactError(f"refusing to follow a malformed API link: {href!r}")
        scheme, netloc = self._origin
        return f"{scheme}://{netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def _request(
        self, endpoint: Endpoint, method: str, url: str, **kwargs: Any
    ) -> requests.Response:
        """Send once; after a 401, refresh the token (at most once) and send once more."""
        response, token = self._send(endpoint, method, url, None, **kwargs)
        if response.status_code == 401:
            response.close()
            refreshed = self._tokens.refresh(token)
            response, _ = self._send(endpoint, method, url, refreshed, **kwargs)
            if response.status_code == 401:
                response.close()
                raise ConstantContactError(
                    f"{method} {urlsplit(url).path}: 401 even after a token refresh",
                    status=401,
                    error_key="unauthorized",
                )
        if 300 <= response.status_code < 400:
            response.close()
            raise ConstantContactError(
                f"{method} {urlsplit(url).path}: refusing to follow a {response.status_code} "
                "redirect (links are followed only on the API host, and only as given)",
                status=response.status_code,
            )
        if response.status_code >= 400:
            try:
                raise_for_status(response)
            except TransientApiError as error:
                slower = self._slow_down(error)
                if slower is error:
                    raise
                raise slower from error
            finally:
                response.close()
        return response

    def _send(
        self, endpoint: Endpoint, method: str, url: str, token: str | None, **kwargs: Any
    ) -> tuple[requests.Response, str]:
        """One request, after its permit; the token is read after any wait for the permit, so
        a refresh made meanwhile by another worker is already used."""
        self._budget.acquire(self._account)
        token = token or self._tokens.access_token()
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **kwargs.get("headers", {}),
        }
        options = {k: v for k, v in kwargs.items() if k != "headers"}
        try:
            response = self._session.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                **options,
            )
        except requests.Timeout as error:
            raise TransientError(f"{method} {urlsplit(url).path} timed out") from error
        except requests.ConnectionError as error:
            raise TransientError(f"{method} {urlsplit(url).path}: connection failed") from error
        if self._on_answer is not None:
            self._on_answer(endpoint.value, response.status_code)
        return response, token

    def _slow_down(self, error: TransientApiError) -> TransientError:
        """A 429 tells every worker, not only this one: the quota is spent until 00:00 UTC, or
        the server wants a pause (then this step backs off like after any transient error)."""
        if error.status != 429:
            return error
        if error.error_key == "quota_exceeded":
            return self._budget.quota_exceeded()
        self._budget.penalize(error.retry_after or THROTTLED_PAUSE_SECONDS)
        return error


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


@dataclass(frozen=True, repr=False)
class Grant:
    """What the token endpoint handed out (a rotating endpoint also gives a refresh token)."""

    access_token: str
    refresh_token: str | None
    expires_in: float | None


class OAuthClient:
    """Constant Contact's token endpoint, ``grant_type=refresh_token`` with HTTP Basic."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        session: requests.Session | None = None,
        connect_timeout: float = TOKEN_CONNECT_TIMEOUT,
        read_timeout: float = TOKEN_READ_TIMEOUT,
    ) -> None:
        self._url = token_url
        self._auth = (client_id, client_secret)
        self._session = session or requests.Session()
        self._timeout = (connect_timeout, read_timeout)

    def __repr__(self) -> str:
        return f"OAuthClient({self._url!r}, <redacted>)"

    def refresh(self, refresh_token: str) -> Grant:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        try:
            response = self._session.post(
                self._url,
                data=form,
                auth=self._auth,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise TransientError("token endpoint: timed out") from None
        except requests.ConnectionError:
            raise TransientError("token endpoint: connection failed") from None
        with response:
            if response.status_code != 200:
                raise _token_error(response, (refresh_token, self._auth[1]))
            try:
                body = response.json()
                return Grant(
                    access_token=str(body["access_token"]),
                    refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
                    expires_in=float(body["expires_in"]) if body.get("expires_in") else None,
                )
            except (ValueError, KeyError, TypeError):
                raise ConstantContactError("token endpoint: unexpected answer body") from None


def _token_error(response: requests.Response, hidden: tuple[str, ...]) -> Exception:
    status = response.status_code
    key, message = parse_error_body(response)
    for secret in hidden:
        message = message.replace(secret, "<redacted>") if message else message
    text = f"token endpoint: {status} {key or ''}: {message or ''}".rstrip(": ")
    if status == 429 or status >= 500:
        wait = _retry_after(response.headers.get("Retry-After"))
        return TransientApiError(text, status=status, error_key=key, retry_after=wait)
    if key == "invalid_client":
        text += " (check CC_CLIENT_ID and CC_CLIENT_SECRET)"
    return ConstantContactError(text, status=status, error_key=key)
