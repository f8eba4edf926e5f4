import socket
from urllib.parse import urlparse

import httpx
from django.conf import settings
from django.db import connection
from django.http import JsonResponse


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


def _inference_ok(url: str) -> bool:
    """Ready, not merely listening: our server answers /health 200 only once warmed up;
    other OpenAI-compatible servers (vLLM, TGI) have /health or at least /v1/models."""
    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=1.0) as client:
            response = client.get(f"{base}/health")
            if response.status_code == 404:
                response = client.get(f"{base}/v1/models")
        return response.status_code == 200
    except httpx.HTTPError:
        return False


def healthz(request):
    checks = {
        "database": _database_ok(),
        "broker": _tcp_ok(settings.REDIS_URL),
        "inference": _inference_ok(settings.INFERENCE_URL),
    }
    body = {name: "ok" if ok else "down" for name, ok in checks.items()}
    down = [name for name, ok in checks.items() if not ok]
    if down:
        body["detail"] = "Unavailable: " + ", ".join(down)
    return JsonResponse(body, status=503 if down else 200)
