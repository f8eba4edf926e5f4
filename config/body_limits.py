"""A cap on request bodies, enforced before Django reads them.

Django's ASGI handler reads the whole body before routing, authentication or any middleware
runs, so without this an anonymous client could make every web process receive and spool a
body of any size. The cap is checked against Content-Length from the headers alone, and
counted as the body arrives for chunked bodies and for clients that send more than they
declared.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Room for the multipart boundaries, part headers and the small form fields (title, roles)
# that travel with an uploaded file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

# Requests that may carry a document file: the API's upload and replace, and the console's
# upload and change forms.
_UPLOAD_ROUTES = [
    ({"POST"}, re.compile(r"/api/v1/documents/")),
    ({"POST", "PUT", "PATCH"}, re.compile(r"/api/v1/documents/\d+/")),
    ({"POST"}, re.compile(r"/admin/knowledge/document/(add/|[^/]+/change/)")),
]

logger = logging.getLogger(__name__)


def too_large_message(limit: int) -> str:
    return f"Request body too large: the limit is {limit} bytes."


def _declared_length(scope: Scope) -> int | None:
    """Content-Length as an int, or None when absent or not a plain number (chunked bodies
    have none; the server rejects malformed ones, and the body is counted either way)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


class BodySizeLimitMiddleware:
    """Answers 413 to any HTTP request whose body exceeds its limit, and then the app sees
    only ``http.disconnect``: it never gets the excess, and anything it sends is dropped.

    Upload routes get ``upload_limit``; every other request gets ``default_limit``. Both
    default to the settings (INGEST_MAX_UPLOAD_BYTES plus the multipart overhead, and
    REQUEST_MAX_BODY_BYTES), read once here.
    """

    def __init__(
        self, app: ASGIApp, *, default_limit: int | None = None, upload_limit: int | None = None
    ):
        if default_limit is None or upload_limit is None:
            from django.conf import settings

            if default_limit is None:
                default_limit = settings.REQUEST_MAX_BODY_BYTES
            if upload_limit is None:
                upload_limit = settings.INGEST_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit

    def limit_for(self, *, method: str, path: str) -> int:
        for methods, pattern in _UPLOAD_ROUTES:
            if method in methods and pattern.fullmatch(path):
                return self.upload_limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        path = scope["path"]
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        limit = self.limit_for(method=scope["method"], path=path)

        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            # Answered before the first receive(), so the server never asks the client for
            # the body (no "100 Continue") and closes the connection after this response.
            await _send_too_large(send, limit=limit, as_json=path.startswith("/api/"))
            return

        received = 0
        refused = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not response_started:
                        await _send_too_large(send, limit=limit, as_json=path.startswith("/api/"))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except OSError:
            # Django spools a large body to a temporary file before any view runs; a full or
            # unwritable disk fails there. Nothing was stored: say so instead of a bare 500.
            if response_started or refused:
                raise
            logger.exception("request body could not be stored")
            await _send_refusal(
                send, status=503, message=STORAGE_FAILED, as_json=path.startswith("/api/")
            )


STORAGE_FAILED = (
    "The request could not be stored: the server's disk is full or unwritable. "
    "Nothing was saved; try again later."
)


async def _send_too_large(send: Send, *, limit: int, as_json: bool) -> None:
    await _send_refusal(send, status=413, message=too_large_message(limit), as_json=as_json)


async def _send_refusal(send: Send, *, status: int, message: str, as_json: bool) -> None:
    if as_json:
        body = json.dumps({"detail": message}).encode()
        content_type = b"application/json"
    else:
        body = message.encode()
        content_type = b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
