"""Who sent a request: Slack's v0 signature (slack_sdk's SignatureVerifier, one per accepted
secret) and the v1 signature of the generic webhook. A request that fails any check is
refused with 401 and nothing is read from it; the reason is logged, never the signature,
the secret or the body."""

from __future__ import annotations

import hashlib
import hmac
import logging
from time import time as now

from django.conf import settings
from slack_sdk.signature import SignatureVerifier

logger = logging.getLogger(__name__)

MAX_CLOCK_SKEW_SECONDS = 300  # Slack's window: a request older or newer than this is refused


class SignatureRejected(Exception):
    """The request is not proven to come from the platform (401)."""


def verify_slack_request(*, body: bytes, headers) -> None:
    """Raise SignatureRejected unless ``body`` carries a current signature made with one of
    SLACK_SIGNING_SECRETS (two during a rotation)."""
    timestamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    _check_request_shape(body=body, timestamp=timestamp, signature=signature, prefix="v0=")
    for secret in settings.SLACK_SIGNING_SECRETS:
        # is_valid checks the 5-minute window and compares in constant time.
        if SignatureVerifier(secret).is_valid(body=body, timestamp=timestamp, signature=signature):
            return
    raise SignatureRejected("the signature does not match")


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``v1:{timestamp}:{body}`` (what a sender computes)."""
    message = b"v1:" + timestamp.encode("ascii") + b":" + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook_request(*, secret: str, body: bytes, headers) -> None:
    timestamp = headers.get("X-Webhook-Timestamp")
    signature = headers.get("X-Webhook-Signature")
    _check_request_shape(body=body, timestamp=timestamp, signature=signature, prefix="v1=")
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected.encode(), signature.encode("ascii", "replace")):
        raise SignatureRejected("the signature does not match")


def _check_request_shape(*, body: bytes, timestamp, signature, prefix: str) -> None:
    if not timestamp or not signature:
        raise SignatureRejected("the signature or timestamp header is missing")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureRejected("the timestamp is not a number of seconds")
    if not signature.startswith(prefix) or not signature.isascii():
        raise SignatureRejected("the signature is malformed")
    if abs(now() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise SignatureRejected("the timestamp is outside the accepted window")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("the body is not UTF-8") from None
