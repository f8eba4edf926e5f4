"""The OpenAPI schema declares every answer the server gives, errors included.

Views declare their success answers (and any special error, such as a 409) with
``extend_schema``; ``ApiAutoSchema`` adds the error answers every operation shares, each as
the project's error body (config.api_errors): {"detail": "...", "errors": {...}?}.
"""

from django.core.validators import ProhibitNullCharactersValidator, RegexValidator
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from config.api_errors import ERROR_DESCRIPTIONS

BODY_METHODS = {"POST", "PUT", "PATCH"}


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(
        required=False, help_text="validation errors by field, when the request was invalid"
    )


NO_NULL_CHARACTERS = "^[^\\x00]*$"


class ApiAutoSchema(AutoSchema):
    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # DRF refuses NUL in every CharField (400); say so, or clients learn it by failing.
        if (
            direction == "request"
            and schema.get("type") == "string"
            and "pattern" not in schema
            and "format" not in schema
            and "enum" not in schema
            and any(isinstance(v, ProhibitNullCharactersValidator) for v in field.validators)
            # a field with its own pattern (slugs, usernames) gets that one, which excludes NUL
            and not any(isinstance(v, RegexValidator) for v in field.validators)
        ):
            schema["pattern"] = NO_NULL_CHARACTERS
        return schema

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._error_codes(operation):
            if str(code) not in responses:
                responses[str(code)] = self._error_response(code)
        return operation

    def _error_codes(self, operation) -> list[int]:
        codes = [401]
        if not any(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes.append(403)
        if self.method in BODY_METHODS:
            codes += [400, 413, 415]
        elif operation.get("parameters"):
            codes.append(400)  # a query parameter out of range
        if "{" in self.path or any(p["name"] == "page" for p in operation.get("parameters", [])):
            codes.append(404)
        if getattr(self.view, "throttle_scope", None):
            codes.append(429)
        return codes

    def _error_response(self, code: int) -> dict:
        component = self.resolve_serializer(ErrorSerializer(), "response")
        return {
            "description": ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"schema": component.ref}},
        }
