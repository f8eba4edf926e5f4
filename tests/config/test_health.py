"""/healthz and the ingestion worker's heartbeat (config.heartbeat)."""

import os
import signal
import time

import pytest
import redis

from config.heartbeat import HEARTBEAT_INTERVAL_SECONDS, HEARTBEAT_TTL_SECONDS, heartbeat_key

pytestmark = [pytest.mark.django_db, pytest.mark.worker]


def _wait_for(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_healthz_says_worker_down_without_a_fresh_heartbeat_and_ok_after_the_next(
    client, settings, celery_worker, inference_url
):
    settings.INFERENCE_URL = inference_url
    broker = redis.Redis.from_url(settings.REDIS_URL)
    key = heartbeat_key("ingest")
    worker_pid = celery_worker.process.pid
    try:
        assert _wait_for(lambda: broker.exists(key), timeout=HEARTBEAT_INTERVAL_SECONDS + 5)
        assert 0 < broker.ttl(key) <= HEARTBEAT_TTL_SECONDS  # it expires unless refreshed
        healthy = client.get("/healthz")
        assert healthy.status_code == 200, healthy.json()
        assert healthy.json()["worker"] == "ok"

        # A hung worker: it stops beating, and its last heartbeat expires.
        os.kill(worker_pid, signal.SIGSTOP)
        broker.delete(key)
        down = client.get("/healthz")

        assert down.status_code == 503
        assert down.json()["worker"] == "down"
        assert down.json()["detail"] == "Unavailable: worker"
        assert down.json()["database"] == "ok" and down.json()["inference"] == "ok"

        os.kill(worker_pid, signal.SIGCONT)
        assert _wait_for(lambda: broker.exists(key), timeout=HEARTBEAT_INTERVAL_SECONDS + 5)
        again = client.get("/healthz")
        assert again.status_code == 200 and again.json()["worker"] == "ok"
    finally:
        os.kill(worker_pid, signal.SIGCONT)
        broker.close()


def test_healthz_says_worker_down_when_redis_cannot_be_asked(client, monkeypatch):
    unreachable = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    monkeypatch.setattr("config.heartbeat.redis_client", lambda: unreachable)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["worker"] == "down"
