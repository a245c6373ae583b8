from __future__ import annotations

import hashlib
import hmac

import pytest

from workers.exceptions import InvalidExportRequest
from workers.webhooks import check_url, sign

ALLOWED = frozenset({"hooks.example.com"})


def test_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    expected = hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", b"{}") == f"sha256={expected}"
    assert sign("s3cret", "1700000001", b"{}") != sign("s3cret", "1700000000", b"{}")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://hooks.example.com/x", "http(s)"),
        ("https://evil.example.com/x", "WEBHOOK_ALLOWED_HOSTS"),
        ("https:///nohost", "http(s)"),
    ],
)
def test_bad_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(InvalidExportRequest, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_url(url, ALLOWED, secret_set=True)


def test_a_webhook_needs_a_secret() -> None:
    with pytest.raises(InvalidExportRequest, match="WEBHOOK_SECRET"):
        check_url("https://hooks.example.com/x", ALLOWED, secret_set=False)
    check_url("https://HOOKS.example.com/x", ALLOWED, secret_set=True)
