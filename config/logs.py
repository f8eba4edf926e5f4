"""Log records: the request (or Celery task) they belong to, secrets redacted, and the two
output formats LOG_FORMAT chooses between (text, or one JSON object per line).

Nothing here decides what is logged: the app logs ids and outcomes, never question or document
text (a test plants markers in both and looks for them in the output). Redaction is the net
under that rule for what slips through anyway (credentials inside URLs and exception messages,
header values, tokens). It happens in the formatters, on the output only: a filter would have
to rewrite the record itself, which every other handler (pytest's caplog among them) shares.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

from celery import current_task
from pythonjsonlogger.json import JsonFormatter

from config.request_id import current_request_id

REDACTED = "[REDACTED]"

_HEADER_VALUE = re.compile(
    r"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie|x-api-key|http_authorization|http_cookie)"
    r"""(["']?\s*[:=]\s*["']?)[^"'\r\n]+"""
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|token|basic)(\s+)[A-Za-z0-9._~+/=-]{12,}")
_SECRET_FIELD = re.compile(
    r"(?i)\b(password|passwd|secret|client_secret|api_key|apikey|access_token|refresh_token"
    r"|sessionid|csrftoken|csrfmiddlewaretoken|token)"
    r"""(["']?\s*[:=]\s*["']?)[^\s"'&,;)}\]]+"""
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
_SLACK_TOKEN = re.compile(r"\bx(?:ox[a-z]|app)-[A-Za-z0-9-]{8,}")
# accounts.tokens keys: secrets.token_urlsafe(32), 43 characters of the URL-safe alphabet
# (redacted when they mix cases, as a random key all but always does and words rarely do).
_API_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


def _api_token(match: re.Match) -> str:
    word = match.group()
    return REDACTED if word.lower() != word and word.upper() != word else word


def redact(text: str) -> str:
    """``text`` with every credential this project knows the shape of replaced."""
    text = _HEADER_VALUE.sub(rf"\1\2{REDACTED}", text)
    text = _AUTH_SCHEME.sub(rf"\1\2{REDACTED}", text)
    text = _SECRET_FIELD.sub(rf"\1\2{REDACTED}", text)
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    text = _SLACK_TOKEN.sub(REDACTED, text)
    return _API_TOKEN.sub(_api_token, text)


class RequestContextFilter(logging.Filter):
    """Attaches request_id (inside a request) and task_id (inside a Celery task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id is not None and getattr(record, "request_id", None) is None:
            record.request_id = request_id
        if current_task:
            record.task_id = current_task.request.id
        return True


class DropQueryStringFilter(logging.Filter):
    """For uvicorn's access log: the path without its query string, which may hold a search
    (the console's ?q=), a filter value or a credential a client put in the URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path = urlunsplit(urlsplit(args[2])._replace(query="", fragment=""))
            record.args = (args[0], args[1], path, *args[3:])
        return True


class JsonLinesFormatter(JsonFormatter):
    """python-json-logger's formatter: these fields only, credentials redacted. A record's other
    extras never reach the output (Django attaches the request, whose repr holds the query
    string; Celery the task's return value)."""

    ALWAYS = ("time", "level", "logger", "message", "request_id")
    WHEN_SET = ("task_id", "status_code", "exc_info", "stack_info")

    def process_log_record(self, log_data):
        kept = {name: log_data.get(name) for name in self.ALWAYS}
        kept.update({name: log_data[name] for name in self.WHEN_SET if log_data.get(name)})
        for name in ("message", "exc_info", "stack_info"):
            if isinstance(kept.get(name), str):
                kept[name] = redact(kept[name])
        return kept


class TextFormatter(logging.Formatter):
    """The plain format, credentials redacted from the whole line (traceback included)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def json_formatter() -> logging.Formatter:
    return JsonLinesFormatter(
        "{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def text_formatter() -> logging.Formatter:
    return TextFormatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        defaults={"request_id": "-"},
    )
