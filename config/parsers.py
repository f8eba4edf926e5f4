"""The API's JSON parser: DRF's, with a size cap and a nesting cap.

DRF's JSONParser reads a body of any size into memory (it ignores
DATA_UPLOAD_MAX_MEMORY_SIZE), and json.loads recurses once per nesting level, so a few
hundred thousand brackets raise RecursionError (a 500). This parser refuses both first.
"""

from __future__ import annotations

import re
from itertools import accumulate

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

from config.body_limits import too_large_message

# A JSON string, escapes included; the closing quote is optional so that an unterminated
# string is consumed in one match (keeping the scan linear) rather than retried per quote.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


def json_nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings. For valid JSON this is the depth
    json.loads recurses to; for invalid JSON it is at least the depth json.loads reaches
    before it stops at the first error, so a text within a cap never recurses past it."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


class LimitedJSONParser(JSONParser):
    """Reads at most REQUEST_MAX_BODY_BYTES (413 beyond), refuses nesting deeper than
    REQUEST_MAX_JSON_DEPTH and bodies that are not UTF-8 or not JSON (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = settings.REQUEST_MAX_BODY_BYTES
        request = parser_context.get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and str(declared).isdigit() and int(declared) > limit:
            raise RequestBodyTooLarge(too_large_message(limit))
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestBodyTooLarge(too_large_message(limit))

        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"JSON parse error - the body is not valid {encoding}.") from None

        max_depth = settings.REQUEST_MAX_JSON_DEPTH
        if json_nesting_depth(text) > max_depth:
            raise ParseError(f"JSON parse error - nested deeper than {max_depth} levels.")

        parse_constant = json.strict_constant if self.strict else None
        try:
            return json.loads(text, parse_constant=parse_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
