import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
from django.conf import settings
from django.core.cache import cache

from tests.processes import (
    free_port,
    http_answers,
    session_database_url,
    stop_process,
    uvicorn_server,
    wait_until,
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_login_counters():
    """Failed-login counters live in the shared Redis (as in production); without this the
    failures of one test would throttle the logins of the next."""
    yield
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter("throttle:*login-fail:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Factories create many users; PBKDF2's deliberate slowness is only cost in tests (the
    # hasher itself is Django's, and login still checks the password).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


OTHER_TRANSACTIONS_SQL = """
    SELECT pid, application_name, state, now() - xact_start, left(query, 200)
    FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND backend_type = 'client backend' AND xact_start IS NOT NULL
"""


@pytest.fixture(autouse=True)
def _other_processes_done_before_flush(request):
    """A transactional test ends with a TRUNCATE of every table. The web server or the Celery
    worker may still be inside a transaction from the test's last request or task; the
    TRUNCATE then waits on it, and if that transaction goes on to lock another table,
    PostgreSQL breaks the deadlock by failing one of them (a flush failed this way in CI).
    Wait, briefly, until no other session on the test database is inside a transaction.

    Set up after pytest-django's database fixture, so it is torn down before the flush."""
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if not transactional:
        return
    from django.db import connection

    deadline = time.monotonic() + 30
    while True:
        with connection.cursor() as cursor:
            cursor.execute(OTHER_TRANSACTIONS_SQL)
            busy = cursor.fetchall()
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if busy:  # Shown with the flush's error, if it fails.
        print("Still inside a transaction before the flush:", *busy, sep="\n", file=sys.stderr)


class CeleryWorker:
    """A real `celery worker` subprocess on the test database and the session's Redis."""

    def __init__(self, env: dict, log_path):
        self.env, self.log_path, self.process = env, log_path, None

    def start(self, timeout: float = 90) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115  (kept open for the process)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config", "worker",
                "-Q", "ingest", "-c", "1", "-l", "info", "--without-gossip",
                "--without-mingle", "-n", f"test-{os.getpid()}@%h",
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(
            lambda: b" ready." in self.log_path.read_bytes(),
            process=self.process,
            log_path=self.log_path,
            timeout=timeout,
            what="Celery worker",
        )

    def pool_children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    env = dict(os.environ)
    env["DATABASE_URL"] = session_database_url()
    env["INGEST_EMBED_BATCH"] = "16"
    worker = CeleryWorker(env, tmp_path_factory.mktemp("celery") / "worker.log")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def wait_for_document():
    from knowledge.models import Document

    def wait(document_id: int, *statuses: str, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            document = Document.objects.filter(pk=document_id).first()
            if document is not None and document.status in statuses:
                return document
            time.sleep(0.2)
        raise AssertionError(
            f"document {document_id} never reached {statuses}: {document and document.status}"
        )

    return wait


# --- The generator: one real inference server for the whole session (inference, chat and
# browser tests). The model is prepared once under $INFERENCE_TEST_DATA_DIR (default: the
# repository's var/), not the per-session DATA_DIR, so the ~1 minute conversion is not
# repeated by every test session.

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_READY_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from inference.model_files import default_model_dir
    from inference.prepare import convert_default_gguf, ensure_converted

    if os.environ.get("INFERENCE_MODEL"):
        return Path(os.environ["INFERENCE_MODEL"]).resolve()
    data_dir = Path(os.environ.get("INFERENCE_TEST_DATA_DIR") or REPO_ROOT / "var")
    return ensure_converted(target=default_model_dir(data_dir), convert=convert_default_gguf)


@pytest.fixture(scope="session")
def counter(model_dir):
    from chatbot.answering.prompts import token_counter

    return token_counter(model_dir)


@pytest.fixture
def answering(settings, inference_url, model_dir):
    """Chat answers come from the real default model on CPU (a few seconds each)."""
    settings.INFERENCE_URL = inference_url
    settings.INFERENCE_MODEL = str(model_dir)
    return inference_url


@pytest.fixture(scope="session")
def inference_url(model_dir, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("inference") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "inference.server", "--port", str(port)]
    command += ["--model-dir", str(model_dir), "--log-level", "warning"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_answers(f"{url}/health"),
            process=process,
            log_path=log_path,
            timeout=SERVER_READY_TIMEOUT_S,
            what="inference server",
        )
        yield url
    finally:
        stop_process(process)


# --- Slack, stood in for (the Slack tests and the canary walk)


@pytest.fixture(scope="session")
def fake_slack_server():
    from tests.slack_standin import FakeSlack

    server = FakeSlack()
    yield server
    server.stop()


@pytest.fixture
def fake_slack(fake_slack_server, settings):
    from tests.slack_standin import BOT_TOKEN, SIGNING_SECRET

    settings.SLACK_SIGNING_SECRETS = [SIGNING_SECRET]
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_API_URL = fake_slack_server.api_url
    settings.SLACK_RESPONSE_URL_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_RESPONSE_URL_HOSTS = ["127.0.0.1"]
    settings.SLACK_ALLOWED_TEAM_IDS = []
    settings.SLACK_ALLOWED_APP_IDS = []
    settings.PUBLIC_URL = "http://chat.example.test"
    fake_slack_server.reset()
    yield fake_slack_server
    fake_slack_server.reset()


# --- The web process under uvicorn (ASGI, as in production): the browser tests and the canary
# walk (chat streamed over a real server) share it.


@pytest.fixture(scope="session")
def web_server(django_db_setup, django_db_blocker, inference_url, model_dir, tmp_path_factory):
    """The web process under uvicorn, on the database pytest-django created for this session."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "DB_CONN_MAX_AGE": "0",  # no connection outlives a request: the test DB can be dropped
        "INFERENCE_URL": inference_url,
        "INFERENCE_MODEL": str(model_dir),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    log_path = tmp_path_factory.mktemp("web") / "uvicorn.log"
    with uvicorn_server(env=env, port=port, log_path=log_path, access_log=False) as base:
        yield base
