"""Load benchmark for the running stack: search and chat APIs under 1, 4 and 16 users.

    python bench/load.py --url http://127.0.0.1:8000 --username alice_finance --password ...

Prints requests/s, latency p50/p95, errors and, for streamed chat, the time to the first
token; while the chat streams run, a probe keeps calling /healthz to show that the site
still answers other requests. A last phase opens streams and drops them after the first
token, then times a fresh question: abandoned generations must not keep the server busy.

Per-user rate limits apply: run the stack with THROTTLE_RATE_SEARCH and THROTTLE_RATE_CHAT
raised (e.g. 100000/minute) or 429s are counted as errors. Loopback only; every loop is
bounded by --duration and --max-requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

SEARCH_QUERIES = [
    "per diem for domestic travel",
    "hotel cap per night",
    "how do I report a safety incident",
    "parental leave",
    "de-icing holdover time",
    "who approves international trips",
    "records retention for invoices",
    "expense claim deadline",
]
# Distinct questions the bench user (alice_finance: finance and everyone's documents) may ask;
# each user starts at another one, so concurrent users rarely ask the same at once.
CHAT_QUESTIONS = [
    "What is the domestic daily meal per diem?",
    "Who approves international trips?",
    "How long do I have to submit an expense claim?",
    "When are taxis reimbursed?",
    "What was Veluna Air's revenue in Q3 2024?",
    "On which days are supplier payment runs made?",
    "What format does a purchase order number on an invoice need to have?",
    "What's the most I can spend on a hotel per night on a domestic trip?",
    "How many days of annual leave does a full-time employee get?",
    "What is the IT service desk extension?",
    "What was EBITDA in Q3 2024?",
    "What fuel budget is planned for FY2025?",
    "Who is the station manager at Saint-Élouan?",
    "What are the opening hours of the staff canteen?",
    "What's the midpoint of salary band E3?",
    "I've lost my ID badge. Which extension do I call?",
]


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    tokens_per_s: float | None = None  # completion tokens the model server generated

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.0f}"


async def token_for(client: httpx.AsyncClient, username: str, password: str) -> str:
    response = await client.post(
        "/api/v1/auth/token/", json={"username": username, "password": password}
    )
    response.raise_for_status()
    return response.json()["token"]


async def search_user(client, headers, deadline, stats: Stats, max_requests: int, offset: int):
    for i in range(max_requests):
        if time.monotonic() >= deadline:
            return
        query = SEARCH_QUERIES[(offset + i) % len(SEARCH_QUERIES)]
        started = time.monotonic()
        try:
            response = await client.post(
                "/api/v1/search/", json={"query": query, "k": 5}, headers=headers
            )
        except httpx.HTTPError as exc:
            stats.error(type(exc).__name__)
            continue
        if response.status_code == 200:
            stats.latencies.append(time.monotonic() - started)
        else:
            stats.error(str(response.status_code))


async def stream_chat(client, headers, question: str, stats: Stats, *, drop_after_first=False):
    """One streamed question; records time to first token and total time."""
    started = time.monotonic()
    first = None
    outcome = None
    try:
        async with client.stream(
            "POST", "/api/v1/chat/", json={"message": question, "stream": True}, headers=headers
        ) as response:
            if response.status_code != 200:
                stats.error(str(response.status_code))
                return
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    if event == "token" and first is None:
                        first = time.monotonic() - started
                        if drop_after_first:
                            stats.first_tokens.append(first)
                            return  # leaving the block closes the connection
                elif line.startswith("data:") and event in ("done", "error"):
                    outcome = event
                    if event == "error":
                        stats.error("error event: " + json.loads(line[5:])["detail"][:40])
    except httpx.HTTPError as exc:
        stats.error(type(exc).__name__)
        return
    if outcome == "done":
        stats.latencies.append(time.monotonic() - started)
        if first is not None:
            stats.first_tokens.append(first)
    elif outcome is None:
        stats.error("stream ended early")


async def chat_user(client, headers, deadline, stats, max_requests: int, offset: int):
    for i in range(max_requests):
        if time.monotonic() >= deadline:
            return
        question = CHAT_QUESTIONS[(offset * 4 + i) % len(CHAT_QUESTIONS)]
        await stream_chat(client, headers, question, stats)


async def probe(client, stop: asyncio.Event, stats: Stats, interval: float = 0.25):
    """Other traffic while the load runs: /healthz and the login page."""
    for _ in range(100_000):
        if stop.is_set():
            return
        for path in ("/healthz", "/accounts/login/"):
            started = time.monotonic()
            try:
                response = await client.get(path)
                if response.status_code < 500 or path == "/healthz":
                    stats.latencies.append(time.monotonic() - started)
                else:
                    stats.error(str(response.status_code))
            except httpx.HTTPError as exc:
                stats.error(type(exc).__name__)
        await asyncio.sleep(interval)


async def tokens_generated(inference_url: str) -> float | None:
    """The inference server's completion-token counter (None: not this project's server)."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{inference_url}/metrics")
    except httpx.HTTPError:
        return None
    for line in response.text.splitlines():
        if line.startswith("chatbot_inference_tokens_generated_total "):
            return float(line.split()[1])
    return None


async def run_phase(kind: str, users: int, args, headers) -> tuple[Stats, Stats, float]:
    limits = httpx.Limits(max_connections=users + 4, max_keepalive_connections=users + 4)
    timeout = httpx.Timeout(args.chat_timeout if kind == "chat" else 30.0)
    async with httpx.AsyncClient(base_url=args.url, limits=limits, timeout=timeout) as client:
        stats, probe_stats, stop = Stats(), Stats(), asyncio.Event()
        started = time.monotonic()
        deadline = started + args.duration
        worker = search_user if kind == "search" else chat_user
        probe_task = asyncio.create_task(probe(client, stop, probe_stats))
        tokens_before = await tokens_generated(args.inference_url)
        await asyncio.gather(
            *(worker(client, headers, deadline, stats, args.max_requests, n) for n in range(users))
        )
        elapsed = time.monotonic() - started
        tokens_after = await tokens_generated(args.inference_url)
        if tokens_before is not None and tokens_after is not None:
            stats.tokens_per_s = (tokens_after - tokens_before) / elapsed
        stop.set()
        await probe_task
    return stats, probe_stats, elapsed


async def disconnect_phase(args, headers, users: int) -> tuple[Stats, Stats]:
    async with httpx.AsyncClient(base_url=args.url, timeout=args.chat_timeout) as client:
        dropped = Stats()
        await asyncio.gather(
            *(
                stream_chat(client, headers, CHAT_QUESTIONS[n % 4], dropped, drop_after_first=True)
                for n in range(users)
            )
        )
        await asyncio.sleep(0.5)
        after = Stats()
        await stream_chat(client, headers, CHAT_QUESTIONS[0], after)
    return dropped, after


def report(kind: str, users: int, stats: Stats, probe_stats: Stats, elapsed: float) -> None:
    n = len(stats.latencies)
    line = (
        f"{kind:6} users={users:<3} requests={n:<5} rps={n / elapsed:7.1f} "
        f"p50={ms(pct(stats.latencies, 0.5)):>6}ms p95={ms(pct(stats.latencies, 0.95)):>6}ms "
        f"errors={sum(stats.errors.values())}"
    )
    if kind == "chat":
        line += (
            f" first-token p50={ms(pct(stats.first_tokens, 0.5))}ms "
            f"p95={ms(pct(stats.first_tokens, 0.95))}ms"
        )
        if stats.tokens_per_s is not None:
            line += f" model tokens/s={stats.tokens_per_s:.1f}"
    line += (
        f" | other requests meanwhile: n={len(probe_stats.latencies)} "
        f"p50={ms(pct(probe_stats.latencies, 0.5))}ms p95={ms(pct(probe_stats.latencies, 0.95))}ms "
        f"max={ms(max(probe_stats.latencies, default=float('nan')))}ms "
        f"errors={sum(probe_stats.errors.values())}"
    )
    print(line, flush=True)
    for kind_, count in sorted({**stats.errors, **probe_stats.errors}.items()):
        print(f"        {count} x {kind_}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--users", default="1,4,16", help="concurrency levels, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--max-requests", type=int, default=10_000, help="per user and phase")
    parser.add_argument("--chat-timeout", type=float, default=300.0)
    parser.add_argument(
        "--inference-url",
        default="http://127.0.0.1:8001",
        help="the inference server, for its generated-token counter (/metrics)",
    )
    parser.add_argument("--skip", choices=["search", "chat"], action="append", default=[])
    args = parser.parse_args(argv)
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this benchmark only targets a stack on the loopback interface")
    levels = [int(n) for n in args.users.split(",")]

    async with httpx.AsyncClient(base_url=args.url, timeout=30) as client:
        headers = {
            "Authorization": f"Token {await token_for(client, args.username, args.password)}"
        }
    print(f"stack {args.url}, {args.duration:.0f} s per phase, user {args.username}")
    for kind in ("search", "chat"):
        if kind in args.skip:
            continue
        rates = {}
        for users in levels:
            stats, probe_stats, elapsed = await run_phase(kind, users, args, headers)
            report(kind, users, stats, probe_stats, elapsed)
            rates[users] = stats.tokens_per_s
        if kind == "chat" and rates.get(1) and rates.get(4):
            print(f"chat   model tokens/s at 4 users / 1 user: {rates[4] / rates[1]:.2f}x")
    if "chat" not in args.skip:
        users = max(levels)
        dropped, after = await disconnect_phase(args, headers, users)
        print(
            f"disconnect: {users} streams dropped after their first token "
            f"(first token p50={ms(pct(dropped.first_tokens, 0.5))}ms); a fresh question then got "
            f"its first token in {ms(pct(after.first_tokens, 0.5))}ms and finished in "
            f"{ms(pct(after.latencies, 0.5))}ms, errors={sum(after.errors.values())}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
