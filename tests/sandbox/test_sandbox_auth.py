"""OAuth refresh (plain and rotating), token expiry, rate limits and quotas."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date

import pytest
import requests

from sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from sandbox.ratelimit import RateLimiter, Verdict
from sandbox.testing import SandboxProcess

CLIENT_ID = "client-abc"
CLIENT_SECRET = "secret-xyz"
REFRESH = "initial-refresh-token"
STATIC = "static-token"


def basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def refresh(
    session: requests.Session,
    sb: SandboxProcess,
    token: str,
    client: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET),
) -> requests.Response:
    return session.post(
        sb.token_url,
        data={"grant_type": "refresh_token", "refresh_token": token},
        headers=basic(*client),
        timeout=10,
    )


def activities(session: requests.Session, sb: SandboxProcess, token: str) -> requests.Response:
    return session.get(
        f"{sb.api_base}/activities", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="module")
def rotating() -> Iterator[SandboxProcess]:
    args = ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    args += ["--refresh-token", REFRESH, "--rotating-refresh-tokens", "--rate-limit", "3"]
    args += ["--daily-quota", "6"]
    with SandboxProcess(tokens=[STATIC], extra_args=args) as sb:
        yield sb


def test_refresh_without_rotation_keeps_the_refresh_token(session: requests.Session) -> None:
    with SandboxProcess(tokens=[], rate_limit=0) as sb:
        client = (DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        first = refresh(session, sb, "sandbox-refresh-token", client)
        assert first.status_code == 200, first.text
        body = first.json()
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "scope"}
        assert body["token_type"] == "Bearer"
        assert body["scope"] == "contact_data offline_access"
        assert body["expires_in"] == 86_400
        assert body["refresh_token"] == "sandbox-refresh-token"
        assert activities(session, sb, body["access_token"]).status_code == 200
        again = refresh(session, sb, "sandbox-refresh-token", client)
        assert again.status_code == 200
        assert again.json()["access_token"] != body["access_token"]
        # Client credentials may also come in the form body instead of Basic auth.
        form = session.post(
            sb.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": "sandbox-refresh-token",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
            },
            timeout=10,
        )
        assert form.status_code == 200


def test_rotating_refresh_tokens_invalidate_old_ones(
    rotating: SandboxProcess, session: requests.Session
) -> None:
    rotating.reset()
    first = refresh(session, rotating, REFRESH).json()
    assert first["refresh_token"] != REFRESH
    reused = refresh(session, rotating, REFRESH)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert "error_description" in reused.json()
    second = refresh(session, rotating, first["refresh_token"])
    assert second.status_code == 200
    assert refresh(session, rotating, first["refresh_token"]).json()["error"] == "invalid_grant"
    assert activities(session, rotating, second.json()["access_token"]).status_code == 200
    # Access tokens issued earlier stay valid until they expire; rotation is about refresh.
    assert activities(session, rotating, first["access_token"]).status_code == 200


def test_bad_client_credentials_and_grant_types(
    rotating: SandboxProcess, session: requests.Session
) -> None:
    bad = refresh(session, rotating, REFRESH, (CLIENT_ID, "wrong"))
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client"
    wrong_grant = session.post(
        rotating.token_url,
        data={"grant_type": "password", "username": "x"},
        headers=basic(CLIENT_ID, CLIENT_SECRET),
        timeout=10,
    )
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"


def test_expired_tokens_get_401(session: requests.Session) -> None:
    with SandboxProcess(
        tokens=["a", "b"], rate_limit=0, extra_args=["--access-token-ttl", "0"]
    ) as sb:
        issued = refresh(
            session, sb, "sandbox-refresh-token", (DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        ).json()
        assert activities(session, sb, issued["access_token"]).status_code == 401  # TTL 0
        assert activities(session, sb, "a").status_code == 200
        assert sb.expire_tokens("a") == 1
        expired = activities(session, sb, "a")
        assert expired.status_code == 401
        assert expired.json() == {"error_key": "unauthorized", "error_message": "Unauthorized"}
        assert activities(session, sb, "b").status_code == 200
        sb.expire_tokens()
        assert activities(session, sb, "b").status_code == 401


def test_rate_limit_429_throttled_and_daily_quota(
    rotating: SandboxProcess, session: requests.Session
) -> None:
    rotating.reset()
    statuses = [activities(session, rotating, STATIC) for _ in range(5)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert {r.status_code for r in statuses[3:]} == {429}
    assert statuses[3].json()["error_key"] == "throttled"
    assert isinstance(statuses[3].json(), dict)
    log = rotating.requests(endpoint="list_activities")
    assert [r["status"] for r in log] == [200, 200, 200, 429, 429]
    # The control API can lift the per-second limit; the daily quota (6) still applies,
    # and the throttled requests above did not consume any of it.
    rotating.configure(rate_limit=0)
    more = [activities(session, rotating, STATIC).status_code for _ in range(4)]
    assert more == [200, 200, 200, 429]
    quota = activities(session, rotating, STATIC)
    assert quota.json()["error_key"] == "quota_exceeded"
    rotating.configure(rate_limit=3)


def test_rate_limiter_window_and_quota_with_a_fake_clock() -> None:
    now = [100.0]
    today = [date(2024, 1, 1)]
    limiter = RateLimiter(2, 5, clock=lambda: now[0], today=lambda: today[0])
    assert [limiter.check("t") for _ in range(3)] == [
        Verdict.ALLOWED,
        Verdict.ALLOWED,
        Verdict.THROTTLED,
    ]
    assert limiter.check("other") is Verdict.ALLOWED  # limits are per token
    now[0] += 0.999
    assert limiter.check("t") is Verdict.THROTTLED  # still within one second
    now[0] += 0.002
    assert limiter.check("t") is Verdict.ALLOWED
    assert limiter.check("t") is Verdict.ALLOWED
    now[0] += 5
    assert limiter.check("t") is Verdict.ALLOWED  # 5th admitted request today
    now[0] += 5
    assert limiter.check("t") is Verdict.QUOTA_EXCEEDED
    today[0] = date(2024, 1, 2)  # quota resets at 00:00 UTC
    assert limiter.check("t") is Verdict.ALLOWED
