"""GET /healthz: 200 when the database, the broker, the model server and an ingestion worker
(a fresh heartbeat, config.heartbeat) are all usable, else 503 naming what is down. Reads
nothing a user could not know."""

import socket
from urllib.parse import urlparse

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from config.heartbeat import heartbeat_fresh
from inference.client import InferenceClient


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _tcp_ok(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=0.5):
            return True
    except OSError:
        return False


def healthz(request):
    checks = {
        "database": _database_ok(),
        "broker": _tcp_ok(settings.REDIS_URL),
        "inference": InferenceClient(base_url=settings.INFERENCE_URL).is_ready(timeout=1.0),
        "worker": heartbeat_fresh("ingest"),
    }
    body = {name: "ok" if ok else "down" for name, ok in checks.items()}
    down = [name for name, ok in checks.items() if not ok]
    if down:
        body["detail"] = "Unavailable: " + ", ".join(down)
    return JsonResponse(body, status=503 if down else 200)
