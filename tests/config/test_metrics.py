"""GET /metrics: who may scrape it, and that what users do shows up in it (requests by URL
pattern, answers, retrieval, queues, documents, ingestion failures), in one process and
added up across processes (PROMETHEUS_MULTIPROC_DIR)."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile

from chatbot.models import AnswerAudit
from config.celery import app as celery_app
from config.metrics import observe_retrieval
from knowledge import index
from tests import factories
from tests import filebuilders as fb
from tests.metrics_scrape import metric_value, samples

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-0123456789"
CLOSED_PORT_URL = "http://127.0.0.1:9"
REPO_ROOT = Path(__file__).resolve().parents[2]


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.content.decode()


# --- Who may scrape


def test_without_a_token_only_direct_loopback_requests_are_served(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="192.168.0.10").status_code == 403
    # A reverse proxy on this host connects from loopback on behalf of anyone.
    proxied = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert proxied.status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert "chatbot_http_requests_total" in scrape(client)


def test_with_a_token_a_matching_bearer_header_is_required_from_anywhere(client, settings):
    settings.METRICS_TOKEN = TOKEN

    missing = client.get("/metrics")  # loopback no longer suffices
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Token {TOKEN}", TOKEN, "Bearer"):
        response = client.get("/metrics", HTTP_AUTHORIZATION=header, REMOTE_ADDR="127.0.0.1")
        assert response.status_code == 401, header
        assert b"chatbot_" not in response.content

    allowed = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", REMOTE_ADDR="10.1.2.3")
    assert allowed.status_code == 200
    assert b"chatbot_http_requests_total" in allowed.content


def test_metrics_answer_get_only(client):
    assert client.post("/metrics").status_code == 405


# --- Requests by URL pattern


def test_requests_are_counted_by_url_pattern_never_by_path(client):
    user = factories.user()
    api = factories.api_client(user)
    route = "api/v1/conversations/<int:conversation_id>/"
    before = metric_value(scrape(client), "chatbot_http_requests_total", route=route, status="404")

    assert api.get("/api/v1/conversations/987654321/?secret=q").status_code == 404
    assert api.get("/api/v1/conversations/987654322/").status_code == 404
    client.get("/no-such-page-55555/")

    text = scrape(client)
    labels = {
        value
        for sample in samples(text, "chatbot_http_requests_total")
        for value in sample.labels.values()
    }
    after = metric_value(text, "chatbot_http_requests_total", route=route, status="404")
    assert after == before + 2
    assert "unmatched" in labels
    assert not any("98765432" in value or "55555" in value or "?" in value for value in labels)
    assert metric_value(text, "chatbot_http_request_duration_seconds_count", route=route) >= 2


def test_a_live_uvicorn_server_serves_its_metrics_to_loopback(web_server):
    """The ASGI path of the middleware, as production runs it."""
    httpx.get(f"{web_server}/accounts/login/", timeout=10)

    response = httpx.get(f"{web_server}/metrics", timeout=30)

    assert response.status_code == 200
    route = "accounts/login/"
    assert metric_value(response.text, "chatbot_http_requests_total", route=route) >= 1
    refused = httpx.get(
        f"{web_server}/metrics", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=30
    )
    assert refused.status_code == 403


# --- Answers


def _hotel_reader():
    staff = factories.role("staff")
    factories.travel_policy(roles=[staff])
    return factories.user(roles=[staff])


@pytest.mark.model
def test_a_chat_answer_counts_its_outcome_latency_first_token_and_tokens(client, answering):
    api = factories.api_client(_hotel_reader())
    before = scrape(client)

    response = api.post(
        "/api/v1/chat/",
        {"message": "What is the maximum hotel cost per night in London?"},
        format="json",
    )

    assert response.status_code == 200, response.content
    audit = AnswerAudit.objects.get()
    assert audit.outcome in ("answered", "not_found") and audit.completion_tokens > 0
    after = scrape(client)

    def grew(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert grew("chatbot_answers_total", surface="web", outcome=audit.outcome) == 1
    assert grew("chatbot_answer_duration_seconds_count", surface="web") == 1
    assert grew("chatbot_answer_duration_seconds_sum", surface="web") == pytest.approx(
        audit.total_ms / 1000
    )
    assert grew("chatbot_answer_first_token_seconds_count", surface="web") == 1
    assert grew("chatbot_tokens_generated_total", surface="web") == audit.completion_tokens
    assert grew("chatbot_http_requests_total", route="api/v1/chat/", status="200") == 1


def test_an_answer_the_model_could_not_write_counts_as_unavailable_without_latency(
    client, settings
):
    settings.INFERENCE_URL = CLOSED_PORT_URL
    api = factories.api_client(_hotel_reader())
    before = scrape(client)

    response = api.post("/api/v1/chat/", {"message": "Hotel cost in London?"}, format="json")

    assert response.status_code == 503
    after = scrape(client)
    answers, labels = "chatbot_answers_total", {"surface": "web", "outcome": "unavailable"}
    assert metric_value(after, answers, **labels) == metric_value(before, answers, **labels) + 1
    duration = "chatbot_answer_duration_seconds_count"
    assert metric_value(after, duration) == metric_value(before, duration)


# --- Retrieval (knowledge.retrieval.search calls observe_retrieval)


def test_retrieval_latency_is_observed_by_plan_with_bounded_plan_names(client):
    count, bucket = "chatbot_retrieval_duration_seconds_count", "chatbot_retrieval_duration_seconds"
    before = scrape(client)

    observe_retrieval("hnsw", 0.02)
    observe_retrieval("hnsw+exact-fallback", 0.3)
    observe_retrieval("Robert'); DROP TABLE x;--", 0.01)

    after = scrape(client)
    for plan in ("hnsw", "hnsw+exact-fallback", "other"):
        assert metric_value(after, count, plan=plan) == metric_value(before, count, plan=plan) + 1
    le = {"plan": "hnsw", "le": "0.025"}
    grown = metric_value(after, bucket + "_bucket", **le) - metric_value(
        before, bucket + "_bucket", **le
    )
    assert grown == 1
    assert "DROP" not in after


# --- Read at scrape time: queues, documents, ingestion failures


def test_queue_depth_counts_waiting_tasks_and_a_redis_outage_leaves_it_out(
    client, settings, monkeypatch
):
    scratch = f"metrics-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("config.metrics.QUEUES", ("ingest", scratch))
    broker = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert metric_value(scrape(client), "chatbot_queue_depth", queue=scratch) == 0
        celery_app.send_task("metrics.test.never_run", args=[1], queue=scratch)
        celery_app.send_task("metrics.test.never_run", args=[2], queue=scratch, priority=9)

        text = scrape(client)
        assert metric_value(text, "chatbot_queue_depth", queue=scratch) == 2
        assert metric_value(text, "chatbot_broker_up") == 1
    finally:
        keys = broker.keys(f"{scratch}*") + broker.keys(f"_kombu.binding.{scratch}")
        if keys:
            broker.delete(*keys)
        broker.close()

    unreachable = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    monkeypatch.setattr("config.metrics.redis_client", lambda: unreachable)
    text = scrape(client)
    assert metric_value(text, "chatbot_broker_up") == 0
    assert samples(text, "chatbot_queue_depth") == []
    assert samples(text, "chatbot_documents") != []  # the database still answers


def test_documents_by_status_reflects_a_failed_document(client):
    role = factories.role("finance")
    document = factories.indexed_document(title="Budget", text="Budget text.", roles=[role])
    before = scrape(client)

    index.document_mark_failed(document_id=document.pk, reason="test")

    after = scrape(client)
    for status, change in (("failed", 1), ("ready", -1)):
        now = metric_value(after, "chatbot_documents", status=status)
        assert now == metric_value(before, "chatbot_documents", status=status) + change
    assert {s.labels["status"] for s in samples(after, "chatbot_documents")} >= {
        "queued",
        "processing",
        "ready",
        "failed",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_file_the_worker_cannot_parse_is_counted_by_reason(
    client, celery_worker, wait_for_document
):
    factories.role("finance")
    staff = factories.superuser("metrics-admin")
    reason = "chatbot_ingest_failures_total"
    before = scrape(client)

    response = factories.api_client(staff).post(
        "/api/v1/documents/",
        {"file": SimpleUploadedFile("junk.txt", fb.make_binary_junk()), "roles": "finance"},
        format="multipart",
    )
    assert response.status_code == 202
    assert wait_for_document(response.json()["id"], "ready", "failed").status == "failed"

    after = scrape(client)
    grew = {
        code: metric_value(after, reason, reason=code) - metric_value(before, reason, reason=code)
        for code in ("parse_error", "parse_limit", "unexpected", "unsupported_type")
    }
    assert grew == {"parse_error": 1, "parse_limit": 0, "unexpected": 0, "unsupported_type": 0}
    failed = metric_value(after, "chatbot_documents", status="failed")
    assert failed == metric_value(before, "chatbot_documents", status="failed") + 1


# --- Several processes (uvicorn --workers N, Celery workers) add up


CHILD = """
from config.metrics import HTTP_REQUESTS, observe_retrieval
observe_retrieval("exact", 0.01)
HTTP_REQUESTS.labels("healthz", "GET", "200").inc()
"""


def test_with_a_multiprocess_directory_a_scrape_adds_up_every_process(client, settings, tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, cwd=REPO_ROOT)
    assert any(tmp_path.iterdir()), "the processes wrote nothing to the directory"
    settings.METRICS_MULTIPROC_DIR = str(tmp_path)

    text = scrape(client)

    assert metric_value(text, "chatbot_retrieval_duration_seconds_count", plan="exact") == 2
    assert metric_value(text, "chatbot_http_requests_total", route="healthz") == 2
    assert samples(text, "chatbot_documents") != []  # scrape-time readings still come once
