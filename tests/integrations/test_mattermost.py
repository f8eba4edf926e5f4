"""Mattermost slash commands: `POST /integrations/mattermost/<id>/`, a form with the
command's token (``Authorization: Token <token>``, else the form's ``token``) that the
operator pasted into a "Mattermost" workspace. Acknowledged at once; a task answers within
the asker's own roles and posts {"response_type": "ephemeral", "text": ...} to the
response_url.

The only stand-in is Mattermost's response_url (the fake_slack server); answers come from the
real model on CPU."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlencode

import pytest
from django.test import Client

from accounts.models import AccessLogEntry
from accounts.selectors import user_scope
from chatbot.models import AnswerAudit
from integrations import services
from integrations.models import LinkedIdentity, LinkToken, Question, Workspace
from integrations.webhook_views import ALREADY_RECEIVED, WORKING_ON_IT
from knowledge.retrieval import chunk_search
from tests import factories
from tests.integrations import platform_world
from tests.integrations.platform_world import (
    CANARY,
    PULL,
    QUESTION,
    SECRET_TITLE,
    replies_at,
    travel_documents,
)

pytestmark = pytest.mark.django_db

TOKEN = "xr8k3h5c7tg1bq9d4ma6nwz2pe"  # Mattermost's tokens: 26 lowercase letters and digits
OTHER_TOKEN = "f4j9c1uy3ow8ks6gz7nd2ht5qa"
MATTERMOST_USER = "9tq7pyu3ijbz8mhxnwk1oe5c4a"
CHANNEL = "hs8p3kr1tjf6dq9owc2xzyn7ge"
MATTERMOST_HOST = "mattermost.example.test"
HOOK = f"https://{MATTERMOST_HOST}/hooks/commands/a1b2c3d4e5f6g7h8i9j0k1l2m3"
EPHEMERAL = "ephemeral"


# --- Helpers


@pytest.fixture(autouse=True)
def mattermost_host(settings):
    """Mattermost's own host may receive answers (the fake_slack fixture, where a test uses
    it, allows only its local server instead)."""
    settings.WEBHOOK_RESPONSE_URL_HOSTS = [MATTERMOST_HOST]


@pytest.fixture
def integration():
    return Workspace.objects.create(
        platform=Workspace.Platform.MATTERMOST,
        external_id="acme-mattermost",
        name="Acme Mattermost",
        signing_secret=TOKEN,
    )


def command(text: str = QUESTION, **fields) -> dict:
    """The form Mattermost sends for `/ask <text>`."""
    return {
        "channel_id": CHANNEL,
        "channel_name": "town-square",
        "command": "/ask",
        "response_url": HOOK,
        "team_domain": "acme",
        "team_id": "k3n8w1q5rbd7xfj2ey9mu4oc6t",
        "text": text,
        "token": TOKEN,
        "trigger_id": "trig-1",
        "user_id": MATTERMOST_USER,
        "user_name": "alice",
        **fields,
    }


def post(client, integration_id: int, form: dict | bytes, *, token: str | None = TOKEN, **extra):
    """POST the form, with ``Authorization: Token <token>`` unless ``token`` is None."""
    headers = {} if token is None else {"HTTP_AUTHORIZATION": f"Token {token}"}
    body = form if isinstance(form, bytes) else urlencode(form)
    return client.post(
        f"/integrations/mattermost/{integration_id}/",
        data=body,
        content_type="application/x-www-form-urlencoded",
        **headers,
        **extra,
    )


def link(integration: Workspace, user, external_user_id: str = MATTERMOST_USER):
    return platform_world.link(integration, user, external_user_id)


def logged_text(caplog) -> str:
    return "\n".join(
        [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    )


# --- Accepted: the token in the header, or in the form


@pytest.mark.parametrize("where", ["header", "form"])
def test_the_commands_token_in_the_header_or_the_form_is_accepted(
    client, integration, where, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        if where == "header":
            response = post(client, integration.pk, command(token=""), token=TOKEN)
        else:
            response = post(client, integration.pk, command(), token=None)

    assert response.status_code == 200, response.content
    assert response.json() == {"response_type": EPHEMERAL, "text": WORKING_ON_IT}
    assert len(callbacks) == 1
    question = Question.objects.get()
    assert question.workspace == integration and question.kind == Question.Kind.WEBHOOK
    assert (question.external_user_id, question.channel_id, question.text) == (
        MATTERMOST_USER,
        CHANNEL,
        QUESTION,
    )
    assert (question.response_url, question.event_id) == (HOOK, "trig-1")
    assert question.status == Question.Status.PENDING


# --- Refused: 401, nothing stored


def _refusals() -> dict[str, tuple[dict | bytes, str | None]]:
    """(the form or raw body, the header's token or None for no header)"""
    latin1 = f"user_id={MATTERMOST_USER}&text=caf\xe9&token=".encode("latin-1")
    return {
        "wrong token in the header": (command(), OTHER_TOKEN),
        "wrong token in the form": (command(token=OTHER_TOKEN), None),
        "no token anywhere": (command(token=""), None),
        "no token field at all": (
            {k: v for k, v in command().items() if k != "token"},
            None,
        ),
        "a wrong header beats a right form": (command(), TOKEN[:-1] + "x"),
        "the token with a character more": (command(), TOKEN + "x"),
        "the token's prefix": (command(token=TOKEN[:10]), None),
        "body not UTF-8, no token": (latin1, None),
        "body not UTF-8, token not UTF-8": (latin1 + b"\xff\xfe" + TOKEN.encode(), None),
        "token not ASCII in the header": (command(), "é" * 26),
    }


REFUSALS = list(_refusals())
MALFORMED_HEADERS = {
    "Bearer instead of Token": f"Bearer {TOKEN}",
    "Token without a value": "Token",
    "Token and spaces": "Token    ",
    "the bare token": TOKEN,
    "not ASCII": "Tøken " + TOKEN,
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_command_without_its_token_is_401_and_nothing_is_stored(
    client, integration, case, caplog
):
    form, token = _refusals()[case]
    caplog.set_level(logging.DEBUG)

    response = post(client, integration.pk, form, token=token)

    assert response.status_code == 401, response.content
    assert response.json() == {"detail": "The slash command's token is missing or wrong."}
    assert not Question.objects.exists() and not LinkToken.objects.exists()
    logged = logged_text(caplog)
    assert "request refused" in logged
    assert TOKEN not in logged and OTHER_TOKEN not in logged and QUESTION not in logged


@pytest.mark.parametrize("case", list(MALFORMED_HEADERS))
def test_a_malformed_authorization_header_is_401_even_with_the_token_in_the_form(
    client, integration, case
):
    response = post(
        client, integration.pk, command(), token=None, HTTP_AUTHORIZATION=MALFORMED_HEADERS[case]
    )

    assert response.status_code == 401, response.content
    assert not Question.objects.exists()


def test_another_workspaces_token_is_401(client, integration):
    other = Workspace.objects.create(
        platform=Workspace.Platform.MATTERMOST, external_id="other", signing_secret=OTHER_TOKEN
    )

    by_header = post(client, integration.pk, command(token=OTHER_TOKEN), token=OTHER_TOKEN)
    by_form = post(client, integration.pk, command(token=OTHER_TOKEN), token=None)
    at_its_own = post(client, other.pk, command(token=OTHER_TOKEN), token=OTHER_TOKEN)

    assert by_header.status_code == 401 and by_form.status_code == 401
    assert at_its_own.status_code == 200
    assert Question.objects.get().workspace == other


# --- Which integration: 404


@pytest.mark.parametrize(
    "which", ["unknown", "out of range", "disabled", "slack", "webhook", "no token"]
)
def test_only_an_enabled_mattermost_integration_with_a_token_is_served(client, integration, which):
    token = TOKEN
    if which == "unknown":
        integration_id = integration.pk + 1000
    elif which == "out of range":
        integration_id = 2**70
    elif which == "disabled":
        Workspace.objects.filter(pk=integration.pk).update(enabled=False)
        integration_id = integration.pk
    elif which in {"slack", "webhook"}:
        integration_id = Workspace.objects.create(
            platform=which, external_id=f"T0{which}", signing_secret=TOKEN
        ).pk
    else:  # an empty token would be matched by an empty header or form field
        Workspace.objects.filter(pk=integration.pk).update(signing_secret="")
        integration_id, token = integration.pk, ""

    response = post(client, integration_id, command(token=token), token=None)

    assert response.status_code == 404, response.content
    assert response.json()["detail"]
    assert not Question.objects.exists() and not LinkToken.objects.exists()


def test_only_post_is_answered(client, integration):
    assert client.get(f"/integrations/mattermost/{integration.pk}/").status_code == 405


# --- Not a question


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_an_empty_command_gets_the_usage_and_nothing_is_stored(client, integration, text):
    response = post(client, integration.pk, command(text, command="/askdocs"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response_type"] == EPHEMERAL
    assert "/askdocs What is the meal per diem?" in body["text"]
    assert not Question.objects.exists()


BAD_COMMANDS = {
    "no user_id": (command(user_id=""), "user_id"),
    "no response_url": (command(response_url=""), "response_url"),
    "response_url on another host": (
        command(response_url="http://127.0.0.1:8001/v1/completions"),
        "WEBHOOK_RESPONSE_URL_HOSTS",
    ),
    "response_url not http": (command(response_url=f"ftp://{MATTERMOST_HOST}/h"), "http"),
    "response_url too long": (command(response_url=HOOK + "a" * 500), "response_url"),
    "user_id too long": (command(user_id="u" * 65), "user_id"),
    "channel_id too long": (command(channel_id="c" * 65), "channel_id"),
    "text with NUL": (command("hotel\x00cost"), "text"),
}


@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_a_command_that_cannot_be_answered_is_400(client, integration, case, caplog):
    form, named = BAD_COMMANDS[case]
    caplog.set_level(logging.DEBUG)

    response = post(client, integration.pk, form)

    assert response.status_code == 400, response.content
    assert named in response.json()["detail"]
    assert not Question.objects.exists()
    assert TOKEN not in logged_text(caplog)


def test_answers_go_only_to_the_allowed_hosts(client, integration, settings):
    settings.WEBHOOK_RESPONSE_URL_HOSTS = []

    response = post(client, integration.pk, command())

    assert response.status_code == 400
    assert "WEBHOOK_RESPONSE_URL_HOSTS" in response.json()["detail"]
    assert not Question.objects.exists()


# --- Answers from the real model


@pytest.mark.model
def test_one_task_then_a_private_answer_from_the_askers_roles_with_a_source_link(
    client, integration, answering, fake_slack, settings, django_capture_on_commit_callbacks, caplog
):
    staff, _ = travel_documents()
    asker = factories.user(roles=[staff])
    link(integration, asker)
    url = fake_slack.response_url("mm-answer")
    caplog.set_level(logging.DEBUG)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, integration.pk, command(response_url=url))

    assert response.status_code == 200, response.content
    assert response.json() == {"response_type": EPHEMERAL, "text": WORKING_ON_IT}
    assert len(callbacks) == 1, "exactly one answer task, enqueued on commit"
    question = Question.objects.get()
    assert question.status == Question.Status.PENDING and fake_slack.posts == []

    delivery = services.question_answer(question_id=question.pk)  # what the task runs

    assert delivery.status == Question.Status.ANSWERED and delivery.delivered
    [posted] = replies_at(fake_slack, "mm-answer")
    assert posted == {"response_type": EPHEMERAL, "text": delivery.text}
    assert "180" in posted["text"], posted
    question.refresh_from_db()
    source_link = f"{settings.PUBLIC_URL}/c/{question.message.conversation_id}/"
    _answer, _, sources = posted["text"].partition("\n\nSources: ")
    assert "Travel policy" in sources and source_link in sources, posted
    audit = AnswerAudit.objects.get()
    assert audit.surface == "mattermost" == AnswerAudit.Surface.MATTERMOST
    assert audit.user == asker and audit.question == QUESTION
    assert audit.channel == f"{integration.external_id}/{CHANNEL}"
    assert audit.message_id == question.message_id
    logged = logged_text(caplog)
    assert TOKEN not in logged and QUESTION not in logged


@pytest.mark.model
def test_a_user_without_the_role_never_gets_the_canary(
    client, integration, answering, fake_slack, django_capture_on_commit_callbacks
):
    staff, secret = travel_documents()
    outsider = factories.user(roles=[staff])
    link(integration, outsider)
    url = fake_slack.response_url("mm-outsider")

    with django_capture_on_commit_callbacks(execute=False):
        queued = post(client, integration.pk, command(PULL, response_url=url))
    later = services.question_answer(question_id=Question.objects.get().pk)

    assert queued.status_code == 200
    assert later.status == Question.Status.ANSWERED and later.delivered
    posted = json.dumps(replies_at(fake_slack, "mm-outsider"))
    assert posted != "[]"
    assert CANARY not in posted and SECRET_TITLE not in posted
    assert "9,999" not in posted and "9999" not in posted
    secret_chunks = {c.pk for c in factories.stored_chunks(document=secret)}
    # The question does pull the secret for someone allowed to see it.
    insider = factories.user(roles=[factories.role("board")])
    hits = chunk_search(scope=user_scope(user=insider), query=PULL, k=5)
    assert secret_chunks & {h.chunk_id for h in hits}
    audit = AnswerAudit.objects.get()
    assert audit.user == outsider and audit.surface == AnswerAudit.Surface.MATTERMOST
    assert not secret_chunks & {r["chunk_id"] for r in audit.retrieved}
    assert not secret_chunks & set(audit.shown_chunk_ids)


# --- People not linked yet, too-long questions


def test_an_unlinked_user_gets_the_link_privately_and_no_retrieval(
    client, integration, fake_slack, settings, django_capture_on_commit_callbacks
):
    travel_documents()
    asker = factories.user()
    url = fake_slack.response_url("mm-unlinked")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, integration.pk, command(response_url=url))
    assert response.status_code == 200 and len(callbacks) == 1
    delivery = services.question_answer(question_id=Question.objects.get().pk)

    assert delivery.status == Question.Status.LINK_PROMPTED and delivery.delivered
    [posted] = replies_at(fake_slack, "mm-unlinked")
    assert posted == {"response_type": EPHEMERAL, "text": delivery.text}
    match = re.search(r"https?://\S+", posted["text"])
    assert match and match.group(0).startswith(f"{settings.PUBLIC_URL}/integrations/link/")
    assert "180" not in posted["text"] and "Travel policy" not in posted["text"]
    assert not AnswerAudit.objects.exists()
    # The link binds this Mattermost user, in this integration, to whoever opens it.
    client.force_login(asker)
    assert client.post(match.group(0).removeprefix(settings.PUBLIC_URL)).status_code == 200
    identity = LinkedIdentity.objects.get()
    assert (identity.workspace, identity.external_user_id, identity.user) == (
        integration,
        MATTERMOST_USER,
        asker,
    )


def test_a_question_too_long_is_declined_in_the_reply(
    client, integration, fake_slack, settings, django_capture_on_commit_callbacks
):
    settings.CHAT_MAX_QUESTION_CHARS = 50
    link(integration, factories.user(roles=[factories.role("staff")]))
    url = fake_slack.response_url("mm-long")

    with django_capture_on_commit_callbacks(execute=False):
        assert post(client, integration.pk, command("x" * 51, response_url=url)).status_code == 200
    delivery = services.question_answer(question_id=Question.objects.get().pk)

    assert delivery.status == Question.Status.DECLINED
    assert replies_at(fake_slack, "mm-long") == [
        {"response_type": EPHEMERAL, "text": delivery.text}
    ]
    assert not AnswerAudit.objects.exists()


# --- Redelivered commands


def test_a_repeated_trigger_id_is_answered_once(
    client, integration, fake_slack, django_capture_on_commit_callbacks
):
    url = fake_slack.response_url("mm-twice")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = post(client, integration.pk, command(response_url=url, trigger_id="t-42"))
        again = post(client, integration.pk, command(response_url=url, trigger_id="t-42"))
        other = post(client, integration.pk, command(response_url=url, trigger_id="t-43"))

    assert (first.status_code, first.json()) == (
        200,
        {"response_type": EPHEMERAL, "text": WORKING_ON_IT},
    )
    assert (again.status_code, again.json()) == (
        200,
        {"response_type": EPHEMERAL, "text": ALREADY_RECEIVED},
    )
    assert other.json()["text"] == WORKING_ON_IT
    assert len(callbacks) == 2 and Question.objects.count() == 2
    first_question = Question.objects.get(event_id="t-42")
    services.question_answer(question_id=first_question.pk)
    services.question_answer(question_id=first_question.pk)  # a redelivered task
    assert len(replies_at(fake_slack, "mm-twice")) == 1


def test_mattermosts_long_trigger_ids_are_told_apart_whole(client, integration):
    # Mattermost's trigger ids are a base64 of "<random id>:<user id>:<millis>:<signature>":
    # longer than a Question holds. Two sharing their first 64 characters stay two.
    shared = "bjRrNWJ5ZWR5aWJxOGZ6ZDNhZ2t3bXVldDc6OXRxN3B5dTNpamJ6OG1oeG53azFvZTVjNGE6"
    one, two = shared + "MTcwMDAwMDAwMDAwMQ==", shared + "MTcwMDAwMDAwMDAwMg=="

    first = post(client, integration.pk, command(trigger_id=one))
    again = post(client, integration.pk, command(trigger_id=one))
    second = post(client, integration.pk, command(trigger_id=two))

    assert first.json()["text"] == WORKING_ON_IT and second.json()["text"] == WORKING_ON_IT
    assert again.json()["text"] == ALREADY_RECEIVED
    event_ids = set(Question.objects.values_list("event_id", flat=True))
    assert len(event_ids) == 2 and all(len(e) <= 64 for e in event_ids)


# --- Logs


def test_no_token_question_or_link_is_logged(
    client, integration, fake_slack, settings, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    url = fake_slack.response_url("mm-logs")

    with django_capture_on_commit_callbacks(execute=False):
        post(client, integration.pk, command(response_url=url), token=TOKEN)
        post(client, integration.pk, command(response_url=url, trigger_id="t-2"), token=None)
    post(client, integration.pk, command(token=OTHER_TOKEN), token=OTHER_TOKEN)
    post(client, integration.pk, command(), token=None, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    post(client, integration.pk, command(response_url="ftp://x.test/"))
    delivery = services.question_answer(question_id=Question.objects.get(event_id="trig-1").pk)

    link_url = re.search(r"https?://\S+", delivery.text).group(0)
    records = [r.getMessage() for r in caplog.records]
    assert sum("request refused" in r for r in records) == 2, records
    logged = logged_text(caplog)
    for value in [TOKEN, OTHER_TOKEN, QUESTION, link_url]:
        assert value not in logged


# --- The console: the token is pasted, never generated


def _console_client() -> Client:
    client = Client()
    client.force_login(factories.user(is_superuser=True))
    return client


def test_the_console_takes_the_pasted_token_and_never_generates_or_shows_it():
    client = _console_client()
    form = client.get("/admin/integrations/workspace/add/").content.decode()
    assert "Mattermost" in form and "never generated here" in form

    response = client.post(
        "/admin/integrations/workspace/add/",
        {
            "platform": "mattermost",
            "external_id": "acme-mm",
            "enabled": "on",
            "signing_secret": TOKEN,
        },
        follow=True,
    )

    workspace = Workspace.objects.get(platform="mattermost", external_id="acme-mm")
    assert workspace.signing_secret == TOKEN
    page = response.content.decode()
    assert f"/integrations/mattermost/{workspace.pk}/" in page and TOKEN not in page
    change = client.get(f"/admin/integrations/workspace/{workspace.pk}/change/").content.decode()
    assert 'name="signing_secret"' in change and TOKEN not in change
    for entry in AccessLogEntry.objects.all():
        assert TOKEN not in str(entry.before) + str(entry.after) + entry.target_label


def test_a_mattermost_workspace_saved_without_a_token_has_none_and_is_not_served(client):
    console = _console_client()

    console.post(
        "/admin/integrations/workspace/add/",
        {"platform": "mattermost", "external_id": "acme-mm", "enabled": "on", "signing_secret": ""},
    )

    workspace = Workspace.objects.get(platform="mattermost", external_id="acme-mm")
    assert workspace.signing_secret == ""
    assert post(client, workspace.pk, command(token=""), token=None).status_code == 404


def test_the_console_replaces_a_token_keeps_it_when_blank_and_refuses_a_partial_one():
    workspace = Workspace.objects.create(
        platform="mattermost", external_id="acme-mm", signing_secret=TOKEN, enabled=True
    )
    client = _console_client()
    url = f"/admin/integrations/workspace/{workspace.pk}/change/"
    form = {"name": "Acme", "enabled": "on", "signing_secret": ""}

    assert client.post(url, form).status_code == 302
    assert Workspace.objects.get(pk=workspace.pk).signing_secret == TOKEN

    partial = client.post(url, {**form, "signing_secret": TOKEN[:12]})
    assert partial.status_code == 200 and "26 characters" in partial.content.decode()
    assert Workspace.objects.get(pk=workspace.pk).signing_secret == TOKEN

    assert client.post(url, {**form, "signing_secret": OTHER_TOKEN}).status_code == 302
    assert Workspace.objects.get(pk=workspace.pk).signing_secret == OTHER_TOKEN
