"""Request body caps: the ASGI middleware in front of Django (config.body_limits) and the
API's JSON parser (config.parsers).

Three layers: the middleware driven directly with a fake server (fast, every branch), a real
uvicorn answering raw sockets (what an attacker sees), and the DRF test client (the parser,
also on the WSGI path).
"""

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from config.body_limits import MULTIPART_OVERHEAD_BYTES, BodySizeLimitMiddleware
from config.parsers import json_nesting_depth
from tests import factories
from tests.processes import free_port, http_answers, session_database_url, stop_process, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN_URL = "/api/v1/auth/token/"
DOCUMENTS_URL = "/api/v1/documents/"
GIGABYTE = 1024**3


def _run(coroutine) -> None:
    """asyncio.run in a thread of its own: the browser tests' Playwright keeps an event loop
    running in the main thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()


# --- The middleware, called directly -------------------------------------------------------

DEFAULT_LIMIT, UPLOAD_LIMIT = 1000, 10_000


class FakeServer:
    """The server side of one ASGI request: hands out ``chunks`` as http.request messages
    (then http.disconnect), and records what the app sends."""

    def __init__(self, chunks=()):
        self.chunks = list(chunks)
        self.received = 0
        self.sent = []

    async def receive(self):
        if self.received < len(self.chunks):
            self.received += 1
            more = self.received < len(self.chunks)
            return {
                "type": "http.request",
                "body": self.chunks[self.received - 1],
                "more_body": more,
            }
        return {"type": "http.disconnect"}

    async def send(self, message):
        self.sent.append(message)

    @property
    def status(self):
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, f"expected one response start, got {self.sent}"
        return starts[0]["status"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


class BodyEcho:
    """An app that reads the body the way Django's ASGI handler does, then answers 200 with
    its length; on a disconnect it still tries to answer (a misbehaving app)."""

    def __init__(self):
        self.calls = 0
        self.saw_disconnect = False

    async def __call__(self, scope, receive, send):
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                break
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def http_scope(path=TOKEN_URL, method="POST", length=None):
    headers = [(b"host", b"127.0.0.1")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": headers}


def run_middleware(scope, server, app=None):
    app = app or BodyEcho()
    middleware = BodySizeLimitMiddleware(
        app, default_limit=DEFAULT_LIMIT, upload_limit=UPLOAD_LIMIT
    )
    _run(middleware(scope, server.receive, server.send))
    return app


@pytest.mark.parametrize(
    ("path", "content_type"),
    [(TOKEN_URL, b"application/json"), ("/accounts/login/", b"text/plain; charset=utf-8")],
)
def test_declared_too_large_is_413_before_the_body_or_the_app(path, content_type):
    server = FakeServer([b"x" * (DEFAULT_LIMIT + 1)])
    app = run_middleware(http_scope(path, length=DEFAULT_LIMIT + 1), server)

    assert server.status == 413
    assert server.received == 0  # not one byte of the body was asked for
    assert app.calls == 0
    start = server.sent[0]
    assert (b"content-type", content_type) in start["headers"]
    assert (b"connection", b"close") in start["headers"]
    message = f"Request body too large: the limit is {DEFAULT_LIMIT} bytes."
    expected = json.dumps({"detail": message}).encode() if path == TOKEN_URL else message.encode()
    assert server.body == expected


def test_chunked_body_is_cut_off_once_past_the_limit():
    server = FakeServer([b"x" * 400] * 10)  # no Content-Length: 4000 bytes in 10 messages
    app = run_middleware(http_scope(), server)

    assert server.status == 413  # exactly one response start: the app's 200 was dropped
    assert json.loads(server.body)["detail"].endswith(f"{DEFAULT_LIMIT} bytes.")
    assert server.received == 3  # stopped at the message that crossed 1000 bytes
    assert app.saw_disconnect


def test_body_longer_than_declared_is_counted_too():
    server = FakeServer([b"x" * 600] * 3)
    app = run_middleware(http_scope(length=10), server)

    assert server.status == 413
    assert server.received == 2
    assert app.saw_disconnect


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_body_of_exactly_the_limit_reaches_the_app(declared):
    server = FakeServer([b"x" * 600, b"x" * 400])
    app = run_middleware(http_scope(length=DEFAULT_LIMIT if declared else None), server)

    assert server.status == 200
    assert server.body == str(DEFAULT_LIMIT).encode()
    assert not app.saw_disconnect


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
def test_other_scopes_pass_through_untouched(scope_type):
    seen = []

    async def app(scope, receive, send):
        seen.append((scope, receive, send))

    server = FakeServer()
    scope = {"type": scope_type, "path": TOKEN_URL, "headers": []}
    middleware = BodySizeLimitMiddleware(app, default_limit=0, upload_limit=0)
    _run(middleware(scope, server.receive, server.send))

    assert seen == [(scope, server.receive, server.send)]


@pytest.mark.parametrize(
    ("method", "path", "limit"),
    [
        ("POST", "/api/v1/documents/", UPLOAD_LIMIT),
        ("PATCH", "/api/v1/documents/42/", UPLOAD_LIMIT),
        ("PUT", "/api/v1/documents/42/", UPLOAD_LIMIT),
        ("POST", "/admin/knowledge/document/add/", UPLOAD_LIMIT),
        ("POST", "/admin/knowledge/document/42/change/", UPLOAD_LIMIT),
        ("GET", "/api/v1/documents/", DEFAULT_LIMIT),
        ("POST", "/api/v1/documents/42/file/", DEFAULT_LIMIT),
        ("POST", "/api/v1/auth/token/", DEFAULT_LIMIT),
        ("POST", "/api/v1/search/", DEFAULT_LIMIT),
        ("POST", "/admin/knowledge/document/42/delete/", DEFAULT_LIMIT),
        ("POST", "/admin/accounts/user/add/", DEFAULT_LIMIT),
    ],
)
def test_upload_routes_get_the_upload_limit(method, path, limit):
    upload = FakeServer([b"x" * 5000])
    run_middleware(http_scope(path, method, length=5000), upload)

    assert upload.status == (200 if limit == UPLOAD_LIMIT else 413)


def test_limits_default_to_the_settings():
    middleware = BodySizeLimitMiddleware(BodyEcho())

    assert middleware.default_limit == settings.REQUEST_MAX_BODY_BYTES
    assert middleware.upload_limit == settings.INGEST_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('{"a": [1, {"b": 2}]}', 3),
        ('{"a": "[[[[{{{{"}', 1),  # brackets inside strings do not count
        (r'["\"[[[[", "\\", [[]]]', 3),  # nor after escaped quotes and backslashes
        ("[" * 200_000, 200_000),
        ("", 0),
    ],
)
def test_json_nesting_depth(text, depth):
    assert json_nesting_depth(text) == depth


# --- A real uvicorn, spoken to over raw sockets -----------------------------------------


@pytest.fixture(scope="module")
def uvicorn_port(django_db_setup, tmp_path_factory):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    log_path = tmp_path_factory.mktemp("body-limits") / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    try:
        ready = http_answers(f"http://127.0.0.1:{port}/healthz", status=None)
        wait_until(ready, process=process, log_path=log_path, timeout=60, what="uvicorn")
        yield port
    finally:
        stop_process(process)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, *, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


@pytest.mark.parametrize(
    ("path", "content_type"),
    [(DOCUMENTS_URL, "multipart/form-data; boundary=x"), (TOKEN_URL, "application/json")],
)
def test_uvicorn_refuses_a_declared_gigabyte_without_waiting_for_it(
    uvicorn_port, path, content_type
):
    headers = {"Content-Type": content_type, "Content-Length": str(GIGABYTE)}
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", uvicorn_port), timeout=5) as sock:
        sock.sendall(request_head("POST", path, headers))
        response = read_response(sock, timeout=5)

    assert response.startswith(b"HTTP/1.1 413 "), response[:200]
    assert time.monotonic() - started < 5
    assert b"Request body too large: the limit is" in response


def test_uvicorn_cuts_off_a_chunked_body_past_the_json_limit(uvicorn_port):
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    planned = 256 * 1024 * 1024  # far past the 1 MiB limit
    sent = 0
    with socket.create_connection(("127.0.0.1", uvicorn_port), timeout=5) as sock:
        sock.sendall(request_head("POST", TOKEN_URL, headers))
        try:
            while sent < planned:
                sock.sendall(chunk)
                sent += len(piece)
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server stopped reading: exactly what is being tested
        response = read_response(sock, timeout=5)

    assert response.startswith(b"HTTP/1.1 413 "), response[:200]
    assert sent < 32 * 1024 * 1024, f"the server read {sent} bytes before answering"


def test_uvicorn_still_serves_bodies_under_the_limits(uvicorn_port):
    base = f"http://127.0.0.1:{uvicorn_port}"
    credentials = json.dumps({"username": "nobody", "password": "wrong"}).encode()

    def chunked():
        yield credentials

    with httpx.Client(base_url=base, timeout=10) as client:
        login = client.post(
            TOKEN_URL, content=credentials, headers={"Content-Type": "application/json"}
        )
        chunked_login = client.post(
            TOKEN_URL, content=chunked(), headers={"Content-Type": "application/json"}
        )
        upload = client.post(
            DOCUMENTS_URL, files={"file": ("a.txt", b"hello" * 1000)}, data={"roles": "x"}
        )

    assert login.status_code == 401, login.text
    # Django reads a body without Content-Length as empty, so the credentials never arrive:
    # the point is that a small chunked body reaches the app rather than a 413.
    assert chunked_login.status_code == 400, chunked_login.text
    assert upload.status_code == 401, upload.text


# --- The JSON parser, through the DRF test client -----------------------------------------


def post_token(body: bytes, content_type: str = "application/json"):
    return factories.api_client().post(TOKEN_URL, body, content_type=content_type)


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


@pytest.mark.django_db
def test_deeply_nested_json_is_400_not_500():
    response = post_token(b"[" * 200_000)

    assert response.status_code == 400
    assert "nested deeper than" in response.json()["detail"]


@pytest.mark.django_db
def test_nesting_up_to_the_limit_is_parsed():
    factories.user(username="deep", password="correct-Horse-9")
    limit = settings.REQUEST_MAX_JSON_DEPTH
    body = b'{"username": "deep", "password": "correct-Horse-9", "extra": %s}'
    at_limit = post_token(body % nested(limit - 1))  # the outer object is one level
    over_limit = post_token(body % nested(limit))

    assert at_limit.status_code == 200, at_limit.json()
    assert over_limit.status_code == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"username": "ann", "password": ', "JSON parse error - Expecting value"),
        (b'{"username": "\xff\xfe"}', "not valid utf-8"),
        (b'{"username": "ann", "password": NaN}', "JSON parse error"),
    ],
    ids=["truncated", "not-utf-8", "nan"],
)
@pytest.mark.django_db
def test_malformed_json_is_400_with_a_reason(body, message):
    response = post_token(body)

    assert response.status_code == 400
    assert message in response.json()["detail"]


@pytest.mark.django_db
def test_json_body_over_the_limit_is_413():
    limit = settings.REQUEST_MAX_BODY_BYTES
    padding = b"x" * limit
    response = post_token(b'{"username": "ann", "password": "%s"}' % padding)

    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body too large: the limit is {limit} bytes."}


@pytest.mark.django_db
def test_login_still_works():
    factories.user(username="ann", password="correct-Horse-9")
    right = post_token(json.dumps({"username": "ann", "password": "correct-Horse-9"}).encode())
    wrong = post_token(json.dumps({"username": "ann", "password": "nope"}).encode())

    assert right.status_code == 200
    assert wrong.status_code == 401
