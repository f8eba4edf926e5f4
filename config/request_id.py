"""Request ids: every request gets one, returned in its X-Request-ID response header and
attached (config.logs.RequestContextFilter) to each log record emitted while serving it.

The id lives in a context variable, so it follows the request into the threads Django's
sync_to_async runs views in, and into a streamed response sent after the view returned.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

HEADER = "X-Request-ID"
# A caller's id (a proxy's or a client's) is kept only if it is a short token that cannot
# break a log line or a header: anything else is replaced, never echoed or logged.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def request_id_for(incoming: str | None) -> str:
    """The caller's id when it is a safe short token, else a new random one."""
    if incoming and _SAFE_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(16)


class RequestIdMiddleware:
    """First in MIDDLEWARE, so every response (redirects and refusals too) carries the id.

    The context variable is not reset when the view returns: Django logs the outcome of a
    4xx/5xx response ("Not Found: ...") after the middleware chain, and a streamed answer is
    written after it too. Under ASGI each request runs in its own context; in a thread that
    serves one request after another, the next request sets its own id first."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _start(self, request) -> str:
        request_id = request_id_for(request.headers.get(HEADER))
        current_request_id.set(request_id)
        request.request_id = request_id
        return request_id

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        request_id = self._start(request)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response

    async def __acall__(self, request):
        request_id = self._start(request)
        response = await self.get_response(request)
        response[HEADER] = request_id
        return response
