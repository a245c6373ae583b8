"""Completion webhooks: a signed POST of the export's outcome to a URL the job named.

The receiver checks ``X-Contact-Exports-Signature: sha256=HEX``, the HMAC-SHA256 (secret from
WEBHOOK_SECRET) of ``TIMESTAMP.BODY`` where TIMESTAMP is the ``X-Contact-Exports-Timestamp``
header; signing the timestamp lets receivers refuse replays of old deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from workers.exceptions import InvalidExportRequest, TransientError

SIGNATURE_HEADER = "X-Contact-Exports-Signature"
TIMESTAMP_HEADER = "X-Contact-Exports-Timestamp"
#: Seconds to connect to, then hear from, the receiver.
TIMEOUT = (5.0, 15.0)


def check_url(url: str, allowed_hosts: frozenset[str], secret_set: bool) -> None:
    """Refuse a notify_url before any work starts: wrong scheme, host not allowed, no secret."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidExportRequest("notify_url: only http(s) URLs with a host are accepted")
    if parts.hostname.lower() not in allowed_hosts:
        raise InvalidExportRequest(
            f"notify_url: host {parts.hostname!r} is not in WEBHOOK_ALLOWED_HOSTS"
        )
    if not secret_set:
        raise InvalidExportRequest("notify_url: this worker has no WEBHOOK_SECRET to sign with")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def deliver(url: str, payload: dict[str, Any], secret: str) -> int:
    """POST once; a 2xx is delivered, a 4xx is final, anything else is worth another try."""
    body = json.dumps(payload, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    try:
        answer = requests.post(url, data=body, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as error:
        raise TransientError(f"webhook {urlsplit(url).hostname}: {type(error).__name__}") from error
    if answer.status_code >= 500 or answer.status_code == 429:
        raise TransientError(f"webhook {urlsplit(url).hostname}: HTTP {answer.status_code}")
    return answer.status_code
