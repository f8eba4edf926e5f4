"""API tokens: issued at login, stored hashed, expiring, revocable by their owner.

The token endpoint issues a new token on each login (a hash cannot be handed out twice).
A user keeps at most API_TOKEN_MAX_PER_USER live tokens; issuing one more drops the oldest,
and expired ones are dropped whenever a token is issued.
"""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.models import ApiToken, User

# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenInvalid(Exception):
    """Unknown, expired or revoked; the message says which, for the 401."""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def password_fingerprint(user: User) -> str:
    """Changes whenever the password does (as Django's session auth hash does)."""
    return salted_hmac("accounts.tokens.password", user.password, algorithm="sha256").hexdigest()


@transaction.atomic
def token_issue(*, user: User, name: str = "") -> tuple[ApiToken, str]:
    """A new token for ``user``; returns it with the key, which is never stored."""
    now = timezone.now()
    ApiToken.objects.filter(user=user, expires_at__lte=now).delete()
    keep = settings.API_TOKEN_MAX_PER_USER - 1
    stale = ApiToken.objects.filter(user=user).order_by("-created_at", "-id")[keep:]
    ApiToken.objects.filter(pk__in=list(stale.values_list("pk", flat=True))).delete()
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        key_hash=_hash(key),
        prefix=key[:8],
        name=name[:100],
        expires_at=now + timedelta(seconds=settings.API_TOKEN_LIFETIME_SECONDS),
        password_fingerprint=password_fingerprint(user),
    )
    return token, key


def token_authenticate(*, key: str) -> tuple[User, ApiToken]:
    """The token's user, or TokenInvalid. A token outlived by its password or its expiry is
    deleted here too, so it cannot come back."""
    token = ApiToken.objects.select_related("user").filter(key_hash=_hash(key)).first()
    if token is None:
        raise TokenInvalid("Invalid token.")
    now = timezone.now()
    if token.expires_at <= now:
        token.delete()
        raise TokenInvalid("Token expired: ask for a new one at /api/v1/auth/token/.")
    user = token.user
    if not user.is_active:
        raise TokenInvalid("User inactive or deleted.")
    if not constant_time_compare(token.password_fingerprint, password_fingerprint(user)):
        token.delete()
        raise TokenInvalid("Token revoked: the password was changed.")
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return user, token


def tokens_for_user(*, user: User):
    return ApiToken.objects.filter(user=user, expires_at__gt=timezone.now())


def token_revoke(*, user: User, token_id: int) -> bool:
    """Revoke one of ``user``'s own tokens; False when it has none with that id."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return bool(deleted)


def tokens_revoke_all(*, user: User) -> int:
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted
