"""A real uvicorn (ASGI, as in production) on the test database, and Debian's Chromium.

Chromium comes from the distribution (`apt-get install -y chromium`); Playwright cannot
download browsers here. Tests using these fixtures are marked `browser`.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import free_port, http_answers, session_database_url, stop_process, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


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
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = http_answers(f"{base}/accounts/login/", status=None)
        wait_until(ready, process=process, log_path=log_path, timeout=60, what="uvicorn")
        yield base
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
    # meanwhile (setup, checks, the flush after each test) are plain blocking calls.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(autouse=True)
def _fast_password_hashing():
    """Browser tests log in through the uvicorn process, which checks passwords with the
    project's hashers: the users they create must be hashed the same way."""


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return take
