"""Credentials: API tokens stored hashed, expiring and revocable; logins throttled per account
and per address on every password form, failing closed when the counter store is down."""

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, User
from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "correct-Horse-9"
DEAD_REDIS = "redis://127.0.0.1:9/0"  # the discard port: nothing listens


def _issue(username: str = "ann", password: str = PASSWORD, address: str = "10.0.0.1"):
    return factories.api_client().post(
        "/api/v1/auth/token/",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def _client_with(key: str):
    client = factories.api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def ann():
    return factories.user(username="ann", password=PASSWORD)


# Tokens


def test_only_a_hash_of_the_token_is_stored(ann):
    response = _issue()
    assert response.status_code == 200
    key = response.json()["token"]

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        stored = [str(value) for row in cursor.fetchall() for value in row]
    assert stored and not any(key in value for value in stored)
    assert _client_with(key).get("/api/v1/me/").json()["username"] == "ann"


def test_a_token_expires_after_the_configured_lifetime(ann, settings):
    settings.API_TOKEN_LIFETIME_SECONDS = 3600
    before = timezone.now()
    body = _issue().json()
    token = ApiToken.objects.get(pk=body["id"])
    assert timedelta(minutes=59) < token.expires_at - before <= timedelta(hours=1, seconds=5)

    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _client_with(body["token"]).get("/api/v1/me/")

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert not ApiToken.objects.filter(pk=token.pk).exists()


@pytest.mark.parametrize("change", ["set_password directly", "deactivate directly"])
def test_a_password_change_or_deactivation_on_any_path_stops_the_tokens(ann, change):
    """Also when the change skips the services (manage.py changepassword, a shell)."""
    key = _issue().json()["token"]
    user = User.objects.get(pk=ann.pk)
    if change == "set_password directly":
        user.set_password("another-Horse-10")
    else:
        user.is_active = False
    user.save()

    assert _client_with(key).get("/api/v1/me/").status_code == 401


def test_users_list_and_revoke_only_their_own_tokens(ann):
    bob = factories.user(username="bob", password=PASSWORD)
    first = _issue().json()
    second = _issue().json()
    bobs = _issue("bob").json()
    client = _client_with(second["token"])

    listed = client.get("/api/v1/auth/tokens/").json()
    assert [t["id"] for t in listed] == [second["id"], first["id"]]
    assert [t["current"] for t in listed] == [True, False]
    assert all(first["token"] not in str(t) and second["token"] not in str(t) for t in listed)

    assert client.delete(f"/api/v1/auth/tokens/{bobs['id']}/").status_code == 404
    assert _client_with(bobs["token"]).get("/api/v1/me/").status_code == 200
    assert ApiToken.objects.filter(user=bob).count() == 1

    assert client.delete(f"/api/v1/auth/tokens/{first['id']}/").status_code == 204
    assert _client_with(first["token"]).get("/api/v1/me/").status_code == 401
    assert client.get("/api/v1/me/").status_code == 200


def test_a_user_keeps_at_most_the_configured_number_of_tokens(ann, settings):
    settings.API_TOKEN_MAX_PER_USER = 3
    keys = [_issue().json()["token"] for _ in range(5)]
    assert ApiToken.objects.filter(user=ann).count() == 3
    assert _client_with(keys[0]).get("/api/v1/me/").status_code == 401
    assert _client_with(keys[-1]).get("/api/v1/me/").status_code == 200


def test_a_malformed_token_header_is_401_not_500(ann):
    client = factories.api_client()
    for header in ("Token", "Token a b", "Token \u00e9t\u00e9", "Bearer nope"):
        client.credentials(HTTP_AUTHORIZATION=header)
        response = client.get("/api/v1/me/")
        assert response.status_code == 401, header
        assert response.json()["detail"]


# Login throttling: every password form, per account and per address


def _token_login(username, password, address):
    return _issue(username, password, address).status_code


def _form_login(path):
    def login(username, password, address):
        response = Client(REMOTE_ADDR=address).post(
            path, {"username": username, "password": password}
        )
        if response.status_code == 302:
            return 200  # signed in, redirected onwards
        return response.status_code

    return login


SURFACES = {
    "token endpoint": _token_login,
    "web sign-in": _form_login("/accounts/login/"),
    "console sign-in": _form_login("/admin/login/"),
}
WRONG_ANSWER = {"token endpoint": 401, "web sign-in": 200, "console sign-in": 200}


@pytest.fixture
def limits(settings):
    settings.LOGIN_THROTTLE_PER_ACCOUNT = 3
    settings.LOGIN_THROTTLE_PER_ADDRESS = 5
    return settings


@pytest.mark.parametrize("surface", SURFACES)
def test_failed_logins_for_one_account_are_throttled_with_429(surface, limits):
    factories.user(username="ann", password=PASSWORD, is_staff=True)
    login = SURFACES[surface]
    wrong = WRONG_ANSWER[surface]  # the forms answer a wrong password with the form again

    # Three guesses from three addresses: the per-account limit is what stops the fourth.
    assert [login("ann", "guess", f"10.0.0.{i}") for i in range(3)] == [wrong] * 3
    assert login("ann", "guess", "10.0.0.9") == 429
    assert login("ann", PASSWORD, "10.0.0.10") == 429  # even the right password waits
    assert login("ANN", PASSWORD, "10.0.0.11") == 429  # usernames are not case-split


@pytest.mark.parametrize("surface", SURFACES)
def test_failed_logins_from_one_address_are_throttled_with_429(surface, limits):
    factories.user(username="zoe", password=PASSWORD, is_staff=True)
    login = SURFACES[surface]

    for i in range(5):  # one guess each at five accounts, all from one address
        assert login(f"someone{i}", "guess", "10.9.9.9") != 429
    assert login("zoe", PASSWORD, "10.9.9.9") == 429
    assert login("zoe", PASSWORD, "10.9.9.8") == 200  # another address is not held up


def test_the_429_says_why_and_when_to_come_back(ann, limits):
    for _ in range(3):
        _issue(password="guess")
    response = _issue()
    assert response.status_code == 429
    assert "Too many failed sign-ins for this account" in response.json()["detail"]
    assert 0 < int(response["Retry-After"]) <= limits.LOGIN_THROTTLE_WINDOW_SECONDS

    page = Client(REMOTE_ADDR="10.1.1.1").post(
        "/accounts/login/", {"username": "ann", "password": PASSWORD}
    )
    assert page.status_code == 429
    assert "Too many failed sign-ins for this account" in page.content.decode()


def test_successful_logins_are_not_counted(ann, limits):
    assert [_token_login("ann", PASSWORD, "10.0.0.1") for _ in range(6)] == [200] * 6


# When Redis is down: login fails closed, search and chat fail open (with a log line)


def _redis_down(settings):
    caches = {**settings.CACHES}
    caches[settings.THROTTLE_CACHE_ALIAS] = {
        **caches[settings.THROTTLE_CACHE_ALIAS],
        "LOCATION": DEAD_REDIS,
    }
    settings.CACHES = caches


@pytest.mark.parametrize("surface", SURFACES)
def test_login_fails_closed_when_the_throttle_cache_is_down(surface, ann, settings):
    _redis_down(settings)
    assert SURFACES[surface]("ann", PASSWORD, "10.0.0.1") == 503


def test_the_503_says_sign_in_is_unavailable(ann, settings):
    _redis_down(settings)
    response = _issue()
    assert response.json()["detail"].startswith("Sign-in is temporarily unavailable")


def test_search_fails_open_with_a_log_line_when_the_throttle_cache_is_down(ann, settings, caplog):
    client = factories.api_client(ann)  # a token issued while the cache is up
    _redis_down(settings)

    with caplog.at_level(logging.WARNING, logger="config.throttling"):
        response = client.post("/api/v1/search/", {"query": "travel"}, format="json")

    assert response.status_code == 200
    assert "rate limit check skipped" in caplog.text
