import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger(__name__)

# A lost or refused database connection (a restart, a failover, the pool's timeout), not a
# bug in a query: the request is answered 503 with this, and the next one gets a fresh
# connection (the pool checks each one it hands out: settings DATABASES).
DATABASE_OUTAGES = (OperationalError, InterfaceError)
DATABASE_UNAVAILABLE = (
    "The service is briefly unavailable (its database cannot be reached). "
    "Please try again in a minute."
)
DATABASE_RETRY_AFTER_SECONDS = 30

ERROR_DESCRIPTIONS = {
    400: "the request is invalid (the errors name the fields)",
    401: "no valid credentials",
    403: "not allowed for this user",
    404: "not found, or not visible to this user",
    409: "conflicts with what is stored",
    413: "the request body is too large",
    415: "unsupported content type",
    429: "too many requests; Retry-After says when to come back",
    503: "a component is unavailable",
}


def _flatten(detail, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else f"{prefix}{key}"
            out.extend(_flatten(value, f"{name}." if name else ""))
        return out
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, prefix)]
    field = prefix.rstrip(".")
    return [f"{field}: {detail}" if field else str(detail)]


def api_exception_handler(exc, context):
    """Every API error is JSON {"detail": "..."}; validation errors add field "errors"."""
    if isinstance(exc, DATABASE_OUTAGES):
        logger.warning("database unavailable: %s", exc)
        set_rollback()
        return _database_unavailable(Response)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = "; ".join(_flatten(exc.detail))
        response.data = {"detail": detail, "errors": exc.detail}
    elif (isinstance(response.data, dict) and "detail" not in response.data) or isinstance(
        response.data, list
    ):
        response.data = {"detail": "; ".join(_flatten(response.data))}
    return response


def json_not_found(request, exception=None):
    return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)


def _database_unavailable(response_class):
    response = response_class({"detail": DATABASE_UNAVAILABLE}, status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def json_server_error(request):
    # Django calls this while handling the exception: an outage met outside a DRF view (a
    # middleware, a page) is a 503 too.
    if isinstance(sys.exc_info()[1], DATABASE_OUTAGES):
        return _database_unavailable(JsonResponse)
    return JsonResponse(
        {"detail": "Internal server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR
    )
