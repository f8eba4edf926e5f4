"""Per-user rate limits, counted in Redis so every web process shares one count.

A view opts in with ``throttle_scope = "<scope>"``; the rate comes from
settings.THROTTLE_RATES (read on every request, so it can be changed in tests and by
environment variables without touching the views).
"""

import logging
from types import SimpleNamespace

from django.conf import settings
from django.core.cache import caches
from rest_framework.exceptions import Throttled
from rest_framework.throttling import ScopedRateThrottle

logger = logging.getLogger(__name__)

SCOPE_NAMES = {"chat": "questions", "search": "searches"}


class UserScopedRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle keyed by user (or client address when anonymous), on the shared
    "throttle" cache. Fails open, with a warning, when that cache cannot be reached: a
    broken rate limiter must not take search and chat down with it."""

    @property
    def cache(self):
        return caches[settings.THROTTLE_CACHE_ALIAS]

    def get_rate(self):
        return settings.THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        try:
            allowed = super().allow_request(request, view)
        except Exception:  # a cache outage
            logger.warning("rate limit check skipped: the throttle cache failed", exc_info=True)
            return True
        if not allowed:
            # Raised here rather than returned, so every view (ours or not) answers 429 with
            # a message that says which limit was hit.
            raise Throttled(wait=self.wait(), detail=throttled_message(self.scope))
        return True


def throttled_message(scope: str) -> str:
    """DRF appends "Expected available in N seconds." and sets Retry-After."""
    rate = settings.THROTTLE_RATES.get(scope, "")
    what = SCOPE_NAMES.get(scope, "requests")
    limit = f" (your limit is {rate.replace('/', ' per ')})" if rate else ""
    return f"Too many {what}{limit}."


def user_rate_wait(*, user, scope: str) -> float | None:
    """For answers made outside a DRF view (a Slack task): counts one request against the
    user's ``scope`` limit, on the same count the API uses (asking in Slack and in the web
    chat draws on one allowance). None when allowed, else the seconds to wait."""
    request = SimpleNamespace(user=user, META={})
    try:
        UserScopedRateThrottle().allow_request(request, SimpleNamespace(throttle_scope=scope))
    except Throttled as exc:
        return exc.wait or 60.0
    return None
