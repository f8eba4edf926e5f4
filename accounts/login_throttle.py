"""Login throttling: failed logins counted per account and per client address.

Every way in with a password (the token endpoint, /accounts/login/, /admin/login/) goes
through Django's ``authenticate``; each failure it reports (``user_login_failed``) adds one
to two counters in the shared throttle cache (Redis): one for the username tried and one
for the client address. ``LoginThrottleMiddleware`` refuses a login POST with 429 while
either counter is over its limit, before the password is checked, so guessing stops there.

The counters are fixed windows (the key names the window), so each is one atomic INCR.

Fails closed: when the cache cannot be reached, a login cannot be checked, so it is refused
with 503 (search and chat fail open instead: see config.throttling).
"""

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import caches
from django.dispatch import receiver
from django.http import JsonResponse
from django.shortcuts import render

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    retry_after: int | None = None


def _cache():
    return caches[settings.THROTTLE_CACHE_ALIAS]


def _windows(username: str, address: str) -> list[tuple[str, int]]:
    """(cache key, limit) for each counter that applies; the window is shared."""
    window = int(time.time() // settings.LOGIN_THROTTLE_WINDOW_SECONDS)
    keys = [(f"login-fail:addr:{address}:{window}", settings.LOGIN_THROTTLE_PER_ADDRESS)]
    if username:
        account = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
        key = f"login-fail:user:{account}:{window}"
        keys.append((key, settings.LOGIN_THROTTLE_PER_ACCOUNT))
    return keys


def _retry_after() -> int:
    window = settings.LOGIN_THROTTLE_WINDOW_SECONDS
    return max(1, math.ceil(window - time.time() % window))


def client_address(request) -> str:
    """The peer address. Behind a proxy, uvicorn's --proxy-headers (trusting only the proxy
    in --forwarded-allow-ips) makes this the real client, never a header a client sets."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def login_refusal(username: str, address: str) -> Refusal | None:
    """Why a login may not be tried now, or None."""
    try:
        counts = _cache().get_many([key for key, _ in _windows(username, address)])
    except Exception:
        logger.error("login refused: the throttle cache cannot be reached", exc_info=True)
        return Refusal(503, "Sign-in is temporarily unavailable; try again in a minute.")
    for key, limit in _windows(username, address):
        if counts.get(key, 0) >= limit:
            which = "this account" if ":user:" in key else "your address"
            logger.warning("login throttled for %s (%s)", which, username or address)
            wait = _retry_after()
            return Refusal(
                429,
                f"Too many failed sign-ins for {which}; try again in {wait} seconds.",
                retry_after=wait,
            )
    return None


def record_failure(username: str, address: str) -> None:
    timeout = settings.LOGIN_THROTTLE_WINDOW_SECONDS + 5
    cache = _cache()
    try:
        for key, _ in _windows(username, address):
            cache.add(key, 0, timeout=timeout)
            cache.incr(key)
    except Exception:  # the next attempt is refused by login_refusal anyway (fails closed)
        logger.error("a failed login was not counted: the throttle cache failed", exc_info=True)


@receiver(user_login_failed, dispatch_uid="accounts.login_throttle.count")
def _count_failure(sender, credentials, request=None, **kwargs):
    if request is not None:
        record_failure(str(credentials.get("username", "")), client_address(request))


def _posted_username(request) -> str:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body)
        except (ValueError, RecursionError):
            return ""
        value = data.get("username", "") if isinstance(data, dict) else ""
        return value if isinstance(value, str) else ""
    return request.POST.get("username", "")


class LoginThrottleMiddleware:
    """Refuses POSTs to the login URLs (settings.LOGIN_THROTTLED_PATHS) while throttled."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.path in settings.LOGIN_THROTTLED_PATHS:
            refusal = login_refusal(_posted_username(request), client_address(request))
            if refusal is not None:
                return self._refuse(request, refusal)
        return self.get_response(request)

    def _refuse(self, request, refusal: Refusal):
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": refusal.message}, status=refusal.status)
        else:
            response = render(
                request,
                "registration/login_refused.html",
                {"message": refusal.message, "title": "Sign-in refused"},
                status=refusal.status,
            )
        if refusal.retry_after:
            response["Retry-After"] = str(refusal.retry_after)
        return response
