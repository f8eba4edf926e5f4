"""Container health checks (deploy/compose.yaml): exit 0 when healthy, 1 otherwise.

    healthcheck.py http URL          the URL answers 2xx (Host: the first ALLOWED_HOSTS entry,
                                     so Django answers a probe sent to 127.0.0.1)
    healthcheck.py queue NAME        a worker consuming queue NAME beat within the heartbeat
                                     TTL (config.heartbeat, the key /healthz reads)
    healthcheck.py fresh DIR SECONDS a file under DIR changed within SECONDS (celery beat
                                     rewrites its schedule file while it runs)

Standard library only, except ``queue`` (redis, from the application's own environment).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def probe_host() -> str | None:
    """The Host header for a local probe: a name Django's ALLOWED_HOSTS accepts."""
    for entry in os.environ.get("ALLOWED_HOSTS", "").split(","):
        name = entry.strip().lstrip(".")
        if name and name != "*":
            return name
    return None


def check_http(url: str) -> bool:
    request = urllib.request.Request(url)
    if host := probe_host():
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=8) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return False


def check_queue(queue: str) -> bool:
    sys.path.insert(0, str(REPO_ROOT))
    import redis

    from config.heartbeat import heartbeat_key

    client = redis.Redis.from_url(
        os.environ["REDIS_URL"], socket_connect_timeout=2, socket_timeout=2
    )
    try:
        return bool(client.exists(heartbeat_key(queue)))
    except redis.RedisError as exc:
        print(f"redis: {exc}", file=sys.stderr)
        return False


def check_fresh(directory: str, max_age_seconds: str) -> bool:
    mtimes = [path.stat().st_mtime for path in Path(directory).glob("*") if path.is_file()]
    return bool(mtimes) and time.time() - max(mtimes) < float(max_age_seconds)


CHECKS = {"http": check_http, "queue": check_queue, "fresh": check_fresh}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in CHECKS:
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if CHECKS[argv[0]](*argv[1:]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
