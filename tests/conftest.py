import os
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import psutil
import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


class CeleryWorker:
    """A real `celery worker` subprocess on the test database and the session's Redis."""

    def __init__(self, env: dict, log_path):
        self.env, self.log_path, self.process = env, log_path, None

    def start(self, timeout: float = 90) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115  (kept open for the process)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "chatbot", "worker",
                "-Q", "ingest", "-c", "1", "-l", "info", "--without-gossip",
                "--without-mingle", "-n", f"test-{os.getpid()}@%h",
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "Celery worker did not start:\n" + self.log_path.read_text()[-4000:]
                )
            time.sleep(0.2)

    def pool_children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.db import connection

    # The same server as the session's DATABASE_URL, but the test database pytest-django made.
    url = urlsplit(os.environ["DATABASE_URL"])
    env = dict(os.environ)
    env["DATABASE_URL"] = urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"]))
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
