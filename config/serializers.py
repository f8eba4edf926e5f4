"""Request serializers that take JSON types at their word.

DRF coerces on input: 0 becomes the string "0", "5" the integer 5, 1 the boolean True. The
OpenAPI schema promises types, so a JSON body with the wrong type is refused with 400 rather
than reinterpreted. Form and multipart bodies carry only strings and keep DRF's parsing.
"""

from collections.abc import Mapping

from django.http import QueryDict
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

# Checked in order: BooleanField before IntegerField, since a bool is an int in Python.
JSON_TYPES = [
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.CharField, (str,), "a string"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.ListField, (list,), "a list"),
    (serializers.DictField, (dict,), "an object"),
]


def _type_error(field, value) -> str | None:
    if value is None and field.allow_null:
        return None
    for kind, types, name in JSON_TYPES:
        if isinstance(field, kind):
            wrong = not isinstance(value, types) or (bool not in types and isinstance(value, bool))
            return f"Must be {name}." if wrong else None
    return None


class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, Mapping) and not isinstance(data, QueryDict):
            errors = {}
            for name, field in self.fields.items():
                if field.read_only or name not in data:
                    continue
                value = data[name]
                message = _type_error(field, value)
                child = getattr(field, "child", None)
                if message is None and child is not None and isinstance(value, list):
                    item_errors = [_type_error(child, item) for item in value]
                    if any(item_errors):
                        message = "Each item m" + next(filter(None, item_errors))[1:]
                if message:
                    errors[name] = [message]
            if errors:
                raise ValidationError(errors)
        return super().to_internal_value(data)
