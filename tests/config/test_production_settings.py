"""Production settings: a SECRET_KEY the operator must give, `check --deploy` clean, and the
browser-facing headers (CSP with a nonce for the one inline script, framing, sniffing)."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from config.embedded import EMBEDDED_MARKER

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "0",
    "HTTPS": "true",
    "ALLOWED_HOSTS": "chat.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
}


def _manage(*args: str, data_dir: Path, **overrides) -> subprocess.CompletedProcess:
    """manage.py in a fresh process, on the test session's DATABASE_URL and REDIS_URL (the
    operator's own servers, as far as it can tell: the embedded marker is dropped)."""
    env = {**os.environ, "DATA_DIR": str(data_dir), **PRODUCTION}
    for name in (EMBEDDED_MARKER, "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(name, None)
    env.update(overrides)
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        data_dir=tmp_path, SECRET_KEY=secrets.token_urlsafe(50),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr + result.stdout


def test_without_a_secret_key_production_refuses_to_start_and_generates_none(tmp_path):
    result = _manage("check", data_dir=tmp_path, SECRET_KEY=None)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set: set it to a long random string" in (
        result.stderr
    )
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    "overrides",
    [{EMBEDDED_MARKER: "1"}, {"DEBUG": "1"}],
    ids=["embedded-stack", "debug"],
)
def test_the_embedded_stack_and_debug_still_generate_the_key_under_data_dir(tmp_path, overrides):
    result = _manage("check", data_dir=tmp_path, SECRET_KEY=None, **overrides)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "secret_key").read_text().strip()) >= 50


# --- Headers on the responses


def _policy(response) -> dict[str, list[str]]:
    directives = (d.strip().split() for d in response["Content-Security-Policy"].split(";"))
    return {d[0]: d[1:] for d in directives if d}


@pytest.mark.django_db
def test_pages_carry_the_security_headers(client):
    response = client.get("/accounts/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    policy = _policy(response)
    assert policy["script-src"] == ["'self'"]  # no nonce used: no inline script at all
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["script-src"]


@pytest.mark.django_db
def test_the_session_cookie_is_http_only(client):
    from tests import factories

    factories.user(username="cookie-alice", password="pw-Secret-123")
    client.post("/accounts/login/", {"username": "cookie-alice", "password": "pw-Secret-123"})
    assert client.cookies["sessionid"]["httponly"]


# Executable inline scripts (no src; JSON data blocks are not run, so CSP ignores them).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\b(?:src=|type=\"application/json))([^>]*)>", re.I)
PAGES = ["/", "/accounts/login/", "/admin/", "/admin/dashboard/", "/admin/view-as/",
         "/admin/knowledge/document/", "/admin/chatbot/answeraudit/", "/api/v1/docs/"]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_inline_script_carries_the_responses_nonce(client, path):
    from tests import factories

    client.force_login(factories.superuser())
    response = client.get(path)
    assert response.status_code == 200
    nonce = [s for s in _policy(response)["script-src"] if s.startswith("'nonce-")]
    for attributes in INLINE_SCRIPT.findall(response.content.decode()):
        assert nonce, f"{path}: an inline <script> but no nonce in the policy"
        assert f'nonce="{nonce[0][7:-1]}"' in attributes, f"{path}: <script{attributes}>"
    assert not re.search(r"\son[a-z]+=\"", response.content.decode()), "inline event handler"
