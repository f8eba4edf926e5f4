"""A stand-in for slack.com (the one thing the tests mock): a local HTTP server that answers
like Slack's Web API and like a response_url, and records what was posted; and requests
signed with slack_sdk's own SignatureVerifier, a real client of Slack's scheme."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

from slack_sdk.signature import SignatureVerifier

from tests.processes import free_port

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # Slack's published example secret
BOT_TOKEN = "xoxb-test-token-never-logged"
BOT_USER_ID = "UBOT0001"
TEAM_ID = "T0VELUNA1"


class FakeSlack:
    """slack.com/api/* and response URLs on one local port; ``posts`` is what arrived."""

    def __init__(self):
        self.posts: list[dict] = []
        self.users: dict[str, dict] = {}
        self.fail_methods: set[str] = set()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "json" in (self.headers.get("Content-Type") or ""):
                    body = json.loads(raw or b"{}")
                else:
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    for key in ("blocks",):
                        if isinstance(body.get(key), str):
                            body[key] = json.loads(body[key])
                answer = fake._answer(self.path, body, self.headers.get("Authorization", ""))
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def _answer(self, path: str, body: dict, authorization: str) -> dict:
        method = path.removeprefix("/api/") if path.startswith("/api/") else "response_url"
        with self._lock:
            self.posts.append(
                {"method": method, "path": path, "body": body, "authorization": authorization}
            )
        if method in self.fail_methods:
            return {"ok": False, "error": "channel_not_found"}
        if method == "users.info":
            return {"ok": True, "user": self.users.get(body.get("user"), {"id": body.get("user")})}
        if method == "response_url":
            return {"ok": True}
        return {"ok": True, "channel": body.get("channel"), "ts": f"{time.time():.6f}"}

    def reset(self) -> None:
        with self._lock:
            self.posts.clear()
        self.users.clear()
        self.fail_methods.clear()

    def wait_for(self, predicate, *, timeout: float = 120) -> dict:
        """The first post that satisfies ``predicate``, waiting for the worker to send it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [p for p in self.posts if predicate(p)]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"nothing matching was posted; posts: {self.posts}")

    def stop(self) -> None:
        self.server.shutdown()


def signed_headers(body: bytes, *, timestamp: int | None = None, secret=SIGNING_SECRET) -> dict:
    """Slack's two headers for ``body``, made by slack_sdk (Django test-client spelling)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"HTTP_X_SLACK_REQUEST_TIMESTAMP": ts, "HTTP_X_SLACK_SIGNATURE": signature}


def slash_body(text: str, *, user_id="U0ALICE01", response_url="", team_id=TEAM_ID, **extra):
    fields = {
        "token": "deprecated-verification-token",
        "team_id": team_id,
        "team_domain": "veluna",
        "channel_id": extra.pop("channel_id", "C0GENERAL"),
        "channel_name": extra.pop("channel_name", "general"),
        "user_id": user_id,
        "user_name": "someone",
        "command": "/ask",
        "text": text,
        "api_app_id": "A0CHATBOT",
        "response_url": response_url,
        "trigger_id": extra.pop("trigger_id", f"{time.time_ns()}.1.abc"),
        **extra,
    }
    return urlencode(fields).encode()


def event_body(event: dict, *, event_id: str, team_id=TEAM_ID) -> bytes:
    return json.dumps(
        {
            "token": "deprecated",
            "team_id": team_id,
            "api_app_id": "A0CHATBOT",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": team_id, "user_id": BOT_USER_ID, "is_bot": True}],
            "event": event,
        }
    ).encode()


def post_signed(client, path: str, body: bytes, content_type: str, **headers):
    return client.post(
        path, data=body, content_type=content_type, **{**signed_headers(body), **headers}
    )


def post_slash(client, body: bytes, **headers):
    return post_signed(
        client,
        "/integrations/slack/commands/",
        body,
        "application/x-www-form-urlencoded",
        **headers,
    )


def post_event(client, body: bytes, **headers):
    return post_signed(client, "/integrations/slack/events/", body, "application/json", **headers)
