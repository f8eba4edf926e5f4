"""LOG_FORMAT=json: one JSON object per line, each request's id on its lines, and no secret,
question or document text in the output (config.logs, config.request_id).

The end-to-end test drives a real uvicorn (access log on, as in deploy/README.md) through
sign-in, search, chat and console URLs carrying a password, an API token, a question and a
document marker, with a model server address holding a password (which the chat failure
names), and reads everything the process wrote.
"""

import io
import json
import logging
import os
import secrets
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from config.logs import DropQueryStringFilter, json_formatter, redact, text_formatter
from config.request_id import HEADER, request_id_for
from tests import factories
from tests.processes import free_port, session_database_url, uvicorn_server

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fast_password_hashing():
    """The uvicorn process checks passwords with the project's hashers: users created here
    must be hashed the same way (overrides tests/conftest.py's MD5)."""


def _record(message, *args, exc_info=None, name="chatbot.test", **extra):
    record = logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return record


# --- The redaction, one shape of secret at a time


API_KEY = secrets.token_urlsafe(32)  # the shape accounts.tokens issues


@pytest.mark.parametrize(
    ("logged", "secret"),
    [
        (f"Authorization: Bearer {API_KEY}", API_KEY),
        (f"{{'HTTP_AUTHORIZATION': 'Token {API_KEY}'}}", API_KEY),
        ("Cookie: sessionid=s3ss10nv4lu3xyz; csrftoken=csrfv4lu3abc", "s3ss10nv4lu3xyz"),
        ("Cookie: sessionid=s3ss10nv4lu3xyz; csrftoken=csrfv4lu3abc", "csrfv4lu3abc"),
        (f"token issued: {API_KEY} for alice", API_KEY),
        ("posting with xoxb-1234567890-0987654321-AbCdEfGhIjKl", "xoxb-1234567890"),
        ("socket mode xapp-1-A0123-456-abcdef", "xapp-1-A0123"),
        ("cannot reach postgres://app:Pa55w0rd-db@db:5432/chatbot", "Pa55w0rd-db"),
        ("the inference server at http://svc:m0del-pw@10.0.0.5:8001 is not reachable", "m0del-pw"),
        ("login form: username=alice&password=hunter2-xyz", "hunter2-xyz"),
        ('{"password": "hunter2-xyz", "username": "alice"}', "hunter2-xyz"),
    ],
)
def test_redact_removes_each_kind_of_credential(logged, secret):
    redacted = redact(logged)
    assert secret not in redacted
    assert "[REDACTED]" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "document 42 reused the chunks of document 41",
        "Token expired: ask for a new one at /api/v1/auth/token/.",
        "re-enqueued 3 stuck documents: [1, 2, 3]",
        "http://127.0.0.1:8001/v1/completions answered 503",
    ],
)
def test_redact_leaves_ordinary_messages_alone(text):
    assert redact(text) == text


def test_json_lines_hold_the_fields_and_redact_message_and_traceback():
    try:
        raise RuntimeError(f"connect to postgres://app:tb-secret-1@db/x with Bearer {API_KEY}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = _record(
        "refused %s",
        "Authorization: Bearer " + API_KEY,
        exc_info=exc_info,
        request_id="req-1",
        request=object(),  # Django attaches the request: never serialised
        status_code=401,
    )
    line = json_formatter().format(record)
    data = json.loads(line)
    assert {"time", "level", "logger", "message", "request_id"} <= data.keys()
    assert data["level"] == "WARNING" and data["logger"] == "chatbot.test"
    assert data["request_id"] == "req-1" and data["status_code"] == 401
    assert "request" not in data
    assert "RuntimeError" in data["exc_info"]
    assert API_KEY not in line and "tb-secret-1" not in line
    assert "\n" not in line


def test_text_lines_are_redacted_too():
    record = _record("cannot reach %s", "postgres://app:txt-secret-9@db/x")
    line = text_formatter().format(record)
    assert "txt-secret-9" not in line and "[-]" in line


def test_the_access_log_keeps_the_path_without_its_query_string():
    record = _record(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        "/admin/chatbot/message/?q=salary+of+bob",
        "1.1",
        200,
        name="uvicorn.access",
    )
    DropQueryStringFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /admin/chatbot/message/ HTTP/1.1" 200'


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("0f8c2a7e-5b1d-4c3e-9a4b-2d6e8f1a3c5b", True),
        ("nginx.3f9a1c", True),
        ("", False),
        ("x" * 65, False),
        ("two words", False),
        ('quote"s', False),
        ("-leading-dash", False),
    ],
)
def test_an_incoming_request_id_is_kept_only_when_it_is_a_short_safe_token(incoming, kept):
    request_id = request_id_for(incoming)
    assert (request_id == incoming) is kept
    assert 1 <= len(request_id) <= 64


# --- In-process: the configured handler, under the Django test client and Celery


@pytest.fixture
def json_console():
    """The root console handler (LOGGING's), switched to the JSON format, writing here."""
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    stream, formatter = io.StringIO(), handler.formatter
    previous = handler.setStream(stream)
    handler.setFormatter(json_formatter())
    yield stream
    handler.setStream(previous)
    handler.setFormatter(formatter)


@pytest.mark.django_db
def test_request_id_is_on_the_response_and_on_every_line_logged_while_serving_it(
    client, json_console
):
    response = client.get("/api/v1/no-such-endpoint/?q=zz-query-marker", HTTP_X_REQUEST_ID="t-1")
    generated = client.get("/api/v1/documents/")  # 401, logged as Unauthorized
    lines = [json.loads(line) for line in json_console.getvalue().splitlines()]
    assert response.status_code == 404 and response[HEADER] == "t-1"
    assert generated.status_code == 401 and len(generated[HEADER]) == 32
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["t-1"]["message"] == "Not Found: /api/v1/no-such-endpoint/"
    assert by_id[generated[HEADER]]["message"] == "Unauthorized: /api/v1/documents/"
    assert "zz-query-marker" not in json_console.getvalue()


def test_a_line_logged_inside_a_celery_task_carries_the_task_id(json_console):
    from config import celery_app

    @celery_app.task(name="tests.log_something")
    def log_something():
        logging.getLogger("knowledge.tasks").warning("inside the task")

    result = log_something.apply(task_id="task-for-logs-1")
    assert result.successful()
    [line] = [json.loads(x) for x in json_console.getvalue().splitlines() if "inside" in x]
    assert line["task_id"] == "task-for-logs-1"


# --- End to end: a real uvicorn with LOG_FORMAT=json


@pytest.fixture
def json_logging_server(django_db_setup, tmp_path):
    port = free_port()
    closed_port = free_port()  # nothing listens: every chat fails, naming the URL
    model_password = f"model-pw-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "INFERENCE_URL": f"http://svc:{model_password}@127.0.0.1:{closed_port}",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests' fixture
    log_path = tmp_path / "uvicorn.log"
    # The access log on, as deployed.
    with uvicorn_server(env=env, port=port, log_path=log_path, access_log=True, timeout=90) as base:
        yield base, log_path, model_password


@pytest.mark.django_db(transaction=True)
def test_json_logs_of_real_requests_carry_ids_and_no_secret_or_text(json_logging_server):
    base, log_path, model_password = json_logging_server
    question = f"question-marker-{uuid.uuid4().hex[:12]}"
    document_marker = f"documentmarker{uuid.uuid4().hex[:12]}"
    password = f"pw-{uuid.uuid4().hex[:12]}-Aa1"
    reader = factories.role("log-readers")
    factories.user(username="log-alice", roles=[reader], password=password, is_superuser=True)
    factories.indexed_document(
        title="Travel policy",
        text=f"# Travel\n\nEconomy class for every flight. Reference {document_marker}.",
        roles=[reader],
    )
    responses = {}
    with httpx.Client(base_url=base, timeout=60) as http:
        signed_in = http.post(
            "/api/v1/auth/token/", json={"username": "log-alice", "password": password}
        )
        assert signed_in.status_code == 200, signed_in.text
        token = signed_in.json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        responses["search"] = http.post(
            "/api/v1/search/", json={"query": f"economy flight {question}"}, headers=bearer
        )
        assert document_marker in responses["search"].text  # the text was there to leak
        responses["chat"] = http.post(
            "/api/v1/chat/", json={"message": f"Which class? {question}"}, headers=bearer
        )
        responses["console"] = http.get(
            f"/admin/chatbot/message/?q={question}&access_token={token}", headers=bearer
        )
        responses["missing"] = http.get(
            f"/api/v1/nowhere/?q={question}", headers={**bearer, HEADER: "client-id-7"}
        )
        responses["bad_token"] = http.get(
            "/api/v1/documents/", headers={"Authorization": f"Token {token[::-1]}"}
        )
        responses["unsafe_id"] = http.get("/healthz", headers={HEADER: "a b;c"})
    assert responses["chat"].status_code == 503  # the model server's URL is unreachable
    assert responses["missing"].status_code == 404
    assert responses["missing"].headers[HEADER] == "client-id-7"
    assert responses["unsafe_id"].headers[HEADER] != "a b;c"

    output = log_path.read_text()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # all JSON
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= line.keys(), line

    def logged_for(name: str) -> list[dict]:
        request_id = responses[name].headers[HEADER]
        return [line for line in lines if line["request_id"] == request_id]

    chat_lines = " ".join(line["message"] for line in logged_for("chat"))
    assert "chat: no answer" in chat_lines and "svc:[REDACTED]@" in chat_lines
    assert any("Not Found: /api/v1/nowhere/" in x["message"] for x in logged_for("missing"))
    assert any("Unauthorized" in x["message"] for x in logged_for("bad_token"))
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any("/admin/chatbot/message/ " in message for message in access)
    assert not any("?" in message for message in access)

    database_password = urlsplit(os.environ["DATABASE_URL"]).password
    for secret in (token, password, model_password, question, document_marker, "a b;c"):
        assert secret not in output
    if database_password:
        assert database_password not in output
