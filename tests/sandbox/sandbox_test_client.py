"""A tiny Constant Contact client written for the sandbox's own tests (not a test module)."""

from __future__ import annotations

import time
from typing import Any

import requests

from sandbox.testing import SandboxProcess

TOKEN = "sandbox-tests-token"
CONTACTS = 2_000
SEED = 7
PROCESSING_SECONDS = 0.2
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


class Api:
    """A tiny Constant Contact client written for these tests only."""

    def __init__(self, sb: SandboxProcess, token: str = TOKEN) -> None:
        self.sb = sb
        self.token = token
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def create(self, body: Any, token: str | None = None) -> requests.Response:
        return self.session.post(
            f"{self.sb.api_base}/activities/contact_exports",
            json=body,
            headers=self.auth(token),
            timeout=10,
        )

    def get(self, href: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        """GET a relative href such as ``/v3/activities/<id>``."""
        return self.session.get(
            f"{self.sb.url}{href}", headers=self.auth(token), timeout=10, **kwargs
        )

    def wait(self, activity: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        """Poll the activity's self link until it reaches a terminal state."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(activity["_links"]["self"]["href"])
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["state"] in TERMINAL:
                return body
            assert time.monotonic() < deadline, f"activity stuck: {body}"
            time.sleep(0.02)

    def export(self, body: Any) -> tuple[dict[str, Any], bytes]:
        """Create, wait for completion, download; return the final activity and the bytes."""
        created = self.create(body)
        assert created.status_code == 201, created.text
        final = self.wait(created.json())
        assert final["state"] == "completed", final
        download = self.get(final["_links"]["results"]["href"])
        assert download.status_code == 200, download.text
        return final, download.content
