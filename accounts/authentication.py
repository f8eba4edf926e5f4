"""DRF authentication with the hashed, expiring tokens of accounts.tokens.

The header stays ``Authorization: Token <key>`` (``Bearer`` is accepted too)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from accounts.tokens import TokenInvalid, token_authenticate

KEYWORDS = (b"token", b"bearer")


class ApiTokenAuthentication(BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid token header: expected 'Token <key>'.")
        try:
            key = parts[1].decode("ascii")
            return token_authenticate(key=key)
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token header: the key is not ASCII.") from None
        except TokenInvalid as exc:
            raise AuthenticationFailed(str(exc)) from None

    def authenticate_header(self, request):
        return self.keyword


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Token"
        )
