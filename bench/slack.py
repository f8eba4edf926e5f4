"""Slack's path against the running stack: how fast Slack gets its acknowledgement, and how
long until the answer reaches the command's response_url, against the chat API answering
the same questions for the same user (the baseline, measured in the same run).

    SLACK_SIGNING_SECRET=bench-secret SLACK_RESPONSE_URL_HOSTS=127.0.0.1 make run   # one shell
    SLACK_SIGNING_SECRET=bench-secret .venv/bin/python bench/slack.py               # another

It links a Slack user to --username (manage.py slack_link, logged like any link), listens
for the replies on a local port (the response_url), signs each slash command with
slack_sdk's SignatureVerifier, and prints figures; it asserts nothing. Slack needs the
acknowledgement within 3 s. The demo password is read from DATA_DIR/demo-users.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What is the domestic daily meal per diem?",
    "Who approves international trips?",
    "How long do I have to submit an expense claim?",
    "When are taxis reimbursed?",
]
TEAM, SLACK_USER = "T0BENCH01", "U0BENCH01"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


class Replies:
    """The response_url: records when each reply arrived, by path."""

    def __init__(self):
        self.arrived: dict[str, tuple[float, dict]] = {}
        self.ready = threading.Condition()
        replies = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"] or 0)))
                with replies.ready:
                    replies.arrived[self.path] = (time.monotonic(), body)
                    replies.ready.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{name}"

    def wait(self, name: str, timeout: float) -> tuple[float, dict]:
        with self.ready:
            self.ready.wait_for(lambda: f"/{name}" in self.arrived, timeout=timeout)
            return self.arrived[f"/{name}"]


def slash(http: httpx.Client, secret: str, text: str, response_url: str) -> float:
    """Send one signed slash command; the seconds until the acknowledgement."""
    body = urlencode(
        {
            "team_id": TEAM,
            "user_id": SLACK_USER,
            "channel_id": "D0BENCH",
            "command": "/ask",
            "channel_name": "directmessage",
            "text": text,
            "response_url": response_url,
            "trigger_id": f"{time.time_ns()}.bench",
        }
    ).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body),
    }
    started = time.monotonic()
    response = http.post("/integrations/slack/commands/", content=body, headers=headers)
    response.raise_for_status()
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="alice_finance")
    parser.add_argument("--password", default="", help="default: from DATA_DIR/demo-users.txt")
    parser.add_argument("--runs", type=int, default=8, help="questions asked one at a time")
    parser.add_argument("--burst", type=int, default=8, help="slash commands sent at once")
    args = parser.parse_args()
    secret = os.environ.get("SLACK_SIGNING_SECRET", "")
    if not secret:
        sys.exit("Set SLACK_SIGNING_SECRET to the running server's signing secret.")
    password = args.password or _demo_password(args.username)
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "slack_link", "--team", TEAM,
         "--slack-user", SLACK_USER, "--username", args.username],
        check=True, cwd=ROOT,
    )  # fmt: skip
    replies = Replies()
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.runs)]
    with httpx.Client(base_url=args.url, timeout=300) as http:
        token = http.post(
            "/api/v1/auth/token/", json={"username": args.username, "password": password}
        ).json()["token"]
        chat = []
        for question in questions:
            started = time.monotonic()
            answer = http.post(
                "/api/v1/chat/",
                json={"message": question},
                headers={"Authorization": f"Token {token}"},
            )
            answer.raise_for_status()
            chat.append(time.monotonic() - started)
        acks, answered, cited = [], [], 0
        for i, question in enumerate(questions):
            started = time.monotonic()
            acks.append(slash(http, secret, question, replies.url(f"one-{i}")))
            arrived, body = replies.wait(f"one-{i}", timeout=300)
            answered.append(arrived - started)
            has_sources = "Sources" in json.dumps(body.get("blocks") or [])
            cited += has_sources
            print(
                f"  {question:50} ack {acks[-1] * 1000:5.0f} ms  answer "
                f"{answered[-1] * 1000:6.0f} ms  chat API {chat[i] * 1000:6.0f} ms  "
                f"{'cited' if has_sources else 'no sources'}: {body.get('text', '')[:60]!r}"
            )
        with ThreadPoolExecutor(args.burst) as pool:
            burst_started = time.monotonic()
            burst_acks = list(
                pool.map(
                    lambda i: slash(http, secret, QUESTIONS[i % 4], replies.url(f"burst-{i}")),
                    range(args.burst),
                )
            )
        burst_done = [replies.wait(f"burst-{i}", timeout=600)[0] for i in range(args.burst)]
    burst_answered = [t - burst_started for t in burst_done]

    print(f"Slack slash commands against {args.url} as {args.username}")
    print(f"(one at a time: {args.runs} questions, {len(set(questions))} distinct; query")
    print(" embeddings and the model's weights are warm after the first; 2-core CPU model)")
    print(f"{'':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, values in [
        ("acknowledgement, one at a time", acks),
        (f"acknowledgement, {args.burst} at once", burst_acks),
        ("answer at response_url, one at a time", answered),
        ("chat API JSON answer (baseline)", chat),
        (f"answer at response_url, {args.burst} at once", burst_answered),
    ]:
        print(
            f"{label:34} {pct(values, 0.5) * 1000:8.0f} {pct(values, 0.95) * 1000:8.0f} "
            f"{max(values) * 1000:8.0f}"
        )
    ratio = pct(answered, 0.5) / pct(chat, 0.5)
    print(f"median Slack answer / median chat API answer: {ratio:.2f}")
    print(f"answers with a Sources section: {cited}/{args.runs}")
    return 0


def _demo_password(username: str) -> str:
    path = Path(os.environ.get("DATA_DIR", ROOT / "var")) / "demo-users.txt"
    for line in path.read_text().splitlines():
        name, _, password = line.partition(" ")
        if name == username:
            return password
    sys.exit(f"No password for {username} in {path}; pass --password.")


if __name__ == "__main__":
    sys.exit(main())
