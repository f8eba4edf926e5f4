"""The servers the tests start: free ports, the test database's URL, waiting and stopping."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from config.embedded import free_port

__all__ = [
    "admin_database_url",
    "free_port",
    "http_answers",
    "session_database_url",
    "stop_process",
    "uvicorn_server",
    "wait_until",
]


def session_database_url() -> str:
    """The session's DATABASE_URL, but naming the database pytest-django created, for the
    worker and web processes the tests start."""
    from django.db import connection

    url = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"]))


def admin_database_url() -> str:
    """The cluster superuser's URL on the test database (tests/embedded_services.py): for
    the few checks that must look past row-level security, such as its control case."""
    url = urlsplit(os.environ["DATABASE_ADMIN_URL"])
    return urlunsplit(url._replace(path="/" + connection_name()))


def connection_name() -> str:
    from django.db import connection

    return connection.settings_dict["NAME"]


def http_answers(url: str, *, status: int | None = 200) -> Callable[[], bool]:
    """A readiness check: ``url`` answers (with ``status``, unless None)."""

    def check() -> bool:
        try:
            response = httpx.get(url, timeout=2)
        except httpx.HTTPError:
            return False
        return status is None or response.status_code == status

    return check


def wait_until(
    ready: Callable[[], bool],
    *,
    process: subprocess.Popen,
    log_path: Path,
    timeout: float,
    what: str,
) -> None:
    """Poll ``ready`` until it holds; fail with the process's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log_path.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} not ready after {timeout}s:\n{log_path.read_text()[-4000:]}"
            )
        time.sleep(0.3)


def stop_process(process: subprocess.Popen, *, timeout: float = 20) -> None:
    """Terminate a server the tests started; kill it if it does not stop in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


REPO_ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def uvicorn_server(
    *, env: dict, port: int, log_path: Path, access_log: bool, timeout: float = 60
) -> Iterator[str]:
    """A real uvicorn serving this project on 127.0.0.1:port; yields its base URL once the
    login page answers, and stops it afterwards."""
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if not access_log:
        command.append("--no-access-log")
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = http_answers(f"{base}/accounts/login/", status=None)
        wait_until(ready, process=process, log_path=log_path, timeout=timeout, what="uvicorn")
        yield base
    finally:
        stop_process(process)
