"""Prometheus metrics of the web and worker processes, served at GET /metrics.

Counted where they happen (prometheus_client, in process): HTTP requests by URL pattern
(HttpMetricsMiddleware), answers (observe_answer, from chatbot.services), retrieval by plan
(observe_retrieval). With PROMETHEUS_MULTIPROC_DIR set (before any process starts, the same
empty directory for every web worker and Celery worker on the host) each process writes its
values there and a scrape of any web worker adds them all up; without it a scrape shows the
one process that answers it.

Read at scrape time, whichever process answers (so never summed twice): Celery queue depth
(Redis LLEN), documents by status (one GROUP BY), ingestion failures by reason (a Redis hash
the ingest workers increment: they are other processes, often on other hosts). A store that
is down leaves its series out of the scrape (and chatbot_broker_up 0); it never fails it.

Who may scrape: with METRICS_TOKEN set, a request carrying ``Authorization: Bearer <token>``
(401 otherwise); unset, only a direct request from the loopback address (403 otherwise).
"""

from __future__ import annotations

import hmac
import logging
import re
import time

import redis
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpResponse
from django.utils.decorators import sync_and_async_middleware
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from config.heartbeat import redis_client

logger = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "chatbot_http_requests_total",
    "HTTP requests answered, by URL pattern (route), method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "chatbot_http_request_duration_seconds",
    "Time until the response object was ready (a streamed body continues after it), by route.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ANSWERS = Counter(
    "chatbot_answers_total",
    "Questions attempted, by surface and outcome (answered, not_found, unavailable, failed, "
    "cancelled).",
    ["surface", "outcome"],
)
ANSWER_DURATION = Histogram(
    "chatbot_answer_duration_seconds",
    "Question to stored answer (retrieval, generation, grounding), answered or not_found only.",
    ["surface"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
ANSWER_FIRST_TOKEN = Histogram(
    "chatbot_answer_first_token_seconds",
    "Question to the first answer text streamed to the user.",
    ["surface"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60),
)
TOKENS_GENERATED = Counter(
    "chatbot_tokens_generated_total",
    "Completion tokens the model wrote for stored answers, by surface.",
    ["surface"],
)
RETRIEVAL_DURATION = Histogram(
    "chatbot_retrieval_duration_seconds",
    "Passage search time, by the plan that answered it (exact, hnsw, ...).",
    ["plan"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

# Label values from code, never from requests: anything else becomes "other".
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_PLAN_NAME = re.compile(r"^[a-z][a-z0-9_+-]{0,39}$")
QUEUES = ("ingest", "answers")
INGEST_FAILURE_REASONS = (
    "missing_file",  # the stored original is gone
    "unsupported_type",
    "parse_error",  # a corrupt, empty, encrypted or textless file
    "parse_limit",  # the parser child ran out of memory or time, or died
    "gave_up",  # INGEST_MAX_ATTEMPTS runs ended without a result (the worker died)
    "time_limit",  # the task's soft time limit
    "unexpected",  # a bug: see the worker's log
)
_FAILURES_KEY = "chatbot:metrics:ingest-failures"
# kombu's Redis transport keeps a queue's messages of priority 3, 6 and 9 in lists of their own.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


# --- Recording (called by the code that knows what happened)


def observe_retrieval(plan: str, seconds: float) -> None:
    """One passage search: the plan's name (SearchPlan.name) and how long it took."""
    RETRIEVAL_DURATION.labels(plan if _PLAN_NAME.match(plan) else "other").observe(seconds)


def observe_answer(
    *,
    surface: str,
    outcome: str,
    total_ms: int,
    first_token_ms: int | None,
    completion_tokens: int,
) -> None:
    """One question's end, with the timings its AnswerAudit row already holds."""
    ANSWERS.labels(surface, outcome).inc()
    if outcome in ("answered", "not_found"):
        ANSWER_DURATION.labels(surface).observe(total_ms / 1000)
    if first_token_ms is not None:
        ANSWER_FIRST_TOKEN.labels(surface).observe(first_token_ms / 1000)
    if completion_tokens:
        TOKENS_GENERATED.labels(surface).inc(completion_tokens)


def ingest_failure_record(reason: str) -> None:
    """Count one document marked failed (in Redis: the worker is not the process scraped).
    Never raises: a lost count must not fail the ingestion that records it."""
    if reason not in INGEST_FAILURE_REASONS:
        reason = "unexpected"
    try:
        redis_client().hincrby(_FAILURES_KEY, reason, 1)
    except redis.RedisError as exc:
        logger.warning("ingestion failure not counted (%s): %s", reason, exc)


def _route(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.route or match.view_name or "unnamed"
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    return "unmatched"  # 404s, and answers given before URL resolution (redirects)


def _observe_request(request, response, started: float) -> None:
    route = _route(request)
    method = request.method if request.method in _METHODS else "other"
    HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
    HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)


@sync_and_async_middleware
def HttpMetricsMiddleware(get_response):  # named like the class middlewares in MIDDLEWARE
    if iscoroutinefunction(get_response):

        async def middleware(request):
            started = time.perf_counter()
            response = await get_response(request)
            _observe_request(request, response, started)
            return response

    else:

        def middleware(request):
            started = time.perf_counter()
            response = get_response(request)
            _observe_request(request, response, started)
            return response

    return middleware


# --- Scrape-time readings


def _queue_and_failure_metrics():
    broker_up = GaugeMetricFamily(
        "chatbot_broker_up", "1 when Redis answered this scrape's queue and failure reads."
    )
    try:
        client = redis_client()
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        pipe.hgetall(_FAILURES_KEY)
        *lengths, failures = pipe.execute()
    except redis.RedisError:
        broker_up.add_metric([], 0)
        yield broker_up
        return
    broker_up.add_metric([], 1)
    yield broker_up
    depth = GaugeMetricFamily(
        "chatbot_queue_depth", "Celery tasks waiting in a queue (not yet taken by a worker).",
        labels=["queue"],
    )  # fmt: skip
    per_queue = len(_PRIORITY_SUFFIXES)
    for i, queue in enumerate(QUEUES):
        depth.add_metric([queue], sum(lengths[i * per_queue : (i + 1) * per_queue]))
    yield depth
    counts = {key.decode(): int(value) for key, value in failures.items()}
    failed = CounterMetricFamily(
        "chatbot_ingest_failures", "Documents marked failed by ingestion, by reason.",
        labels=["reason"],
    )  # fmt: skip
    for reason in INGEST_FAILURE_REASONS:
        failed.add_metric([reason], counts.get(reason, 0))
    yield failed


def _document_metrics():
    from knowledge.models import Document

    try:
        rows = dict(Document.objects.order_by().values_list("status").annotate(n=Count("pk")))
    except DatabaseError:
        return
    documents = GaugeMetricFamily(
        "chatbot_documents", "Documents by ingestion status.", labels=["status"]
    )
    for status in Document.Status.values:
        documents.add_metric([status], rows.get(status, 0))
    yield documents


class _Scrape:
    """What one scrape exposes: the counted metrics (this process, or every process that
    wrote to the multiprocess directory) and the readings taken now."""

    def __init__(self, multiproc_dir: str):
        if multiproc_dir:
            self.counted = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.counted, path=multiproc_dir)
        else:
            self.counted = REGISTRY

    def collect(self):
        yield from self.counted.collect()
        yield from _queue_and_failure_metrics()
        yield from _document_metrics()


def metrics_exposition(accept: str = "") -> tuple[bytes, str]:
    """The scrape's body and content type, in the format the Accept header asks for
    (Prometheus's text format unless it asks for OpenMetrics)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_Scrape(settings.METRICS_MULTIPROC_DIR)), content_type


# --- The endpoint

_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-Ip")


def _bearer_matches(request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _direct_from_loopback(request) -> bool:
    # A reverse proxy on this host connects from loopback too: what it forwarded is not local.
    if any(header in request.headers for header in _FORWARDING_HEADERS):
        return False
    return request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")


@require_safe
def metrics_view(request):
    token = settings.METRICS_TOKEN
    if token:
        if not _bearer_matches(request, token):
            response = HttpResponse(
                "A valid metrics token is required.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not _direct_from_loopback(request):
        return HttpResponse(
            "Metrics are served to 127.0.0.1 only unless METRICS_TOKEN is set.\n",
            status=403,
            content_type="text/plain",
        )
    body, content_type = metrics_exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
