"""The generic signed webhook: `POST /integrations/webhook/<id>/`, signed with the
integration's own secret (v1: HMAC-SHA256 of "v1:{timestamp}:{body}"), answered in the
HTTP response or, with a response_url, by a task that posts
{"response_type": "ephemeral", "text": ...} there.

Requests are signed by integrations.verification.webhook_signature, whose scheme the first
test pins with an independent HMAC. The only stand-in is the platform's response_url (the
fake_slack server); answers come from the real model on CPU."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time

import pytest

from accounts.selectors import user_scope
from chatbot.models import AnswerAudit
from integrations import services, verification
from integrations.models import LinkedIdentity, LinkToken, Question, Workspace
from integrations.verification import webhook_signature
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

SECRET = "whsec-test-7c1f0e52b6a94d3f"
PLATFORM_USER = "W0ALICE"


# --- Helpers


@pytest.fixture
def integration():
    return Workspace.objects.create(
        platform=Workspace.Platform.WEBHOOK,
        external_id="relay",
        name="Chat relay",
        signing_secret=SECRET,
    )


@pytest.fixture
def model_down(settings):
    """Nothing listens at INFERENCE_URL: every model call fails."""
    settings.INFERENCE_URL = "http://127.0.0.1:9"


@pytest.fixture
def frozen_clock(monkeypatch):
    """The verifier's clock, stopped at a whole second (the 300 s edges are exact)."""
    now = int(time.time())
    monkeypatch.setattr(verification, "now", lambda: float(now))
    return now


def payload(text: str = QUESTION, *, user: str = PLATFORM_USER, **extra) -> bytes:
    return json.dumps({"user": user, "text": text, **extra}).encode()


def signed(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict:
    """The two v1 headers for ``body`` (Django test-client spelling)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "HTTP_X_WEBHOOK_TIMESTAMP": ts,
        "HTTP_X_WEBHOOK_SIGNATURE": webhook_signature(secret=secret, timestamp=ts, body=body),
    }


def post(client, integration_id: int, body: bytes, headers: dict | None = None, **extra):
    headers = signed(body) if headers is None else headers
    return client.post(
        f"/integrations/webhook/{integration_id}/",
        data=body,
        content_type="application/json",
        **headers,
        **extra,
    )


def link(integration: Workspace, user, external_user_id: str = PLATFORM_USER):
    return platform_world.link(integration, user, external_user_id)


def assert_link_prompt(text: str, public_url: str) -> str:
    """The one-time link in a link prompt, which must live under the app's public URL."""
    match = re.search(r"https?://\S+", text)
    assert match, text
    url = match.group(0)
    assert url.startswith(f"{public_url}/integrations/link/"), url
    return url


# --- The signature scheme


def test_the_signature_is_hex_hmac_sha256_of_v1_timestamp_and_body(client, integration):
    fixed = b'{"user": "W0ALICE", "text": "Is breakfast included?"}'
    # A known answer, then the same HMAC computed here from the spec's own words.
    assert webhook_signature(secret=SECRET, timestamp="1700000000", body=fixed) == (
        "v1=576c7a725330a2e0fb038a45252c187ce26d1f6efe62c061601e9d487be781e1"
    )
    body = payload("Is breakfast included?")
    ts = str(int(time.time()))
    independent = (
        "v1=" + hmac.new(SECRET.encode(), f"v1:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    )
    assert webhook_signature(secret=SECRET, timestamp=ts, body=body) == independent

    response = post(
        client,
        integration.pk,
        body,
        {"HTTP_X_WEBHOOK_TIMESTAMP": ts, "HTTP_X_WEBHOOK_SIGNATURE": independent},
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == Question.Status.LINK_PROMPTED


# --- Answers from the real model


@pytest.mark.model
def test_a_linked_user_gets_an_answer_from_a_document_their_role_sees(
    client, integration, answering, caplog
):
    staff, _ = travel_documents()
    asker = factories.user(roles=[staff])
    link(integration, asker)
    caplog.set_level(logging.DEBUG)

    response = post(client, integration.pk, payload(QUESTION))

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == Question.Status.ANSWERED
    assert "180" in body["text"], body["text"]
    _answer, _, sources = body["text"].partition("\n\nSources: ")
    assert "Travel policy" in sources, body["text"]
    question = Question.objects.get()
    assert question.kind == Question.Kind.WEBHOOK and question.response_url == ""
    assert question.status == Question.Status.ANSWERED and question.message_id is not None
    audit = AnswerAudit.objects.get()
    assert audit.user == asker and audit.surface == AnswerAudit.Surface.WEBHOOK
    assert audit.question == QUESTION and audit.message_id == question.message_id
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert QUESTION not in logged and SECRET not in logged


@pytest.mark.model
def test_a_user_without_the_role_never_gets_the_canary(client, integration, answering, fake_slack):
    staff, secret = travel_documents()
    outsider = factories.user(roles=[staff])
    link(integration, outsider)

    answered = post(client, integration.pk, payload(PULL))
    url = fake_slack.response_url("outsider")
    queued = post(client, integration.pk, payload(PULL, response_url=url))
    later = services.question_answer(question_id=Question.objects.get(response_url=url).pk)

    assert answered.status_code == 200 and queued.status_code == 202
    assert answered.json()["status"] == Question.Status.ANSWERED
    assert later.status == Question.Status.ANSWERED and later.delivered
    posted = json.dumps(replies_at(fake_slack, "outsider"))
    assert posted != "[]"
    for surface, text in {"answer": answered.content.decode(), "posted": posted}.items():
        assert CANARY not in text, surface
        assert SECRET_TITLE not in text, surface
        assert "9,999" not in text and "9999" not in text, surface
    secret_chunks = {c.pk for c in factories.stored_chunks(document=secret)}
    # The question does pull the secret for someone allowed to see it.
    insider = factories.user(roles=[factories.role("board")])
    hits = chunk_search(scope=user_scope(user=insider), query=PULL, k=5)
    assert secret_chunks & {h.chunk_id for h in hits}
    audits = list(AnswerAudit.objects.all())
    assert len(audits) == 2
    for audit in audits:
        assert audit.user == outsider and audit.surface == AnswerAudit.Surface.WEBHOOK
        assert not secret_chunks & {r["chunk_id"] for r in audit.retrieved}
        assert not secret_chunks & set(audit.shown_chunk_ids)


@pytest.mark.model
def test_with_a_response_url_one_task_is_queued_and_the_answer_is_posted_there(
    client, integration, answering, fake_slack, django_capture_on_commit_callbacks
):
    staff, _ = travel_documents()
    link(integration, factories.user(roles=[staff]))
    url = fake_slack.response_url("async-answer")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(
            client, integration.pk, payload(QUESTION, response_url=url), HTTP_X_WEBHOOK_ID="evt-1"
        )

    assert response.status_code == 202, response.content
    assert response.json() == {"text": WORKING_ON_IT}
    assert len(callbacks) == 1, "exactly one answer task, enqueued on commit"
    question = Question.objects.get()
    assert (question.kind, question.response_url, question.event_id) == (
        Question.Kind.WEBHOOK,
        url,
        "evt-1",
    )
    assert question.status == Question.Status.PENDING and fake_slack.posts == []

    delivery = services.question_answer(question_id=question.pk)  # what the task runs

    assert delivery.status == Question.Status.ANSWERED and delivery.delivered
    [posted] = replies_at(fake_slack, "async-answer")
    assert posted == {"response_type": "ephemeral", "text": delivery.text}
    assert "180" in posted["text"] and "Travel policy" in posted["text"], posted


# --- Refused before anything is read: 401


def _refusals(body: bytes, now: int) -> dict[str, tuple[bytes, dict]]:
    good = signed(body, timestamp=now)
    return {
        "wrong secret": (body, signed(body, secret="not-the-secret", timestamp=now)),
        "301 s old": (body, signed(body, timestamp=now - 301)),
        "301 s ahead": (body, signed(body, timestamp=now + 301)),
        "timestamp not a number": (
            body,
            {
                "HTTP_X_WEBHOOK_TIMESTAMP": f"{now}.5",
                "HTTP_X_WEBHOOK_SIGNATURE": webhook_signature(
                    secret=SECRET, timestamp=f"{now}.5", body=body
                ),
            },
        ),
        "timestamp negative": (body, {**good, "HTTP_X_WEBHOOK_TIMESTAMP": f"-{now}"}),
        "no headers": (body, {}),
        "no timestamp": (body, {"HTTP_X_WEBHOOK_SIGNATURE": good["HTTP_X_WEBHOOK_SIGNATURE"]}),
        "no signature": (body, {"HTTP_X_WEBHOOK_TIMESTAMP": good["HTTP_X_WEBHOOK_TIMESTAMP"]}),
        "signature without v1=": (
            body,
            {**good, "HTTP_X_WEBHOOK_SIGNATURE": good["HTTP_X_WEBHOOK_SIGNATURE"][3:]},
        ),
        "Slack's v0 scheme": (
            body,
            {**good, "HTTP_X_WEBHOOK_SIGNATURE": "v0" + good["HTTP_X_WEBHOOK_SIGNATURE"][2:]},
        ),
        "signature not hex": (body, {**good, "HTTP_X_WEBHOOK_SIGNATURE": "v1=" + "é" * 64}),
        "body changed after signing": (body.replace(b"hotel", b"HOTEL"), good),
        "body not UTF-8": (
            b'{"user": "W0ALICE", "text": "caf\xe9"}',
            signed(b'{"user": "W0ALICE", "text": "caf\xe9"}', timestamp=now),
        ),
    }


REFUSALS = list(_refusals(b"", 0))


@pytest.mark.parametrize("case", REFUSALS)
def test_a_request_not_proven_to_come_from_the_integration_is_401(
    client, integration, frozen_clock, case, caplog
):
    body, headers = _refusals(payload(QUESTION), frozen_clock)[case]
    caplog.set_level(logging.DEBUG)

    response = post(client, integration.pk, body, headers)

    assert response.status_code == 401, response.content
    assert response.json() == {"detail": "The request signature is missing, stale or wrong."}
    assert not Question.objects.exists() and not LinkToken.objects.exists()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "request refused" in logged
    assert SECRET not in logged and QUESTION not in logged
    for value in headers.values():
        assert value not in logged


@pytest.mark.parametrize("offset", [-300, 300])
def test_a_timestamp_300_s_off_either_way_is_still_accepted(
    client, integration, frozen_clock, offset
):
    body = payload(QUESTION)

    response = post(client, integration.pk, body, signed(body, timestamp=frozen_clock + offset))

    assert response.status_code == 200, response.content
    assert response.json()["status"] == Question.Status.LINK_PROMPTED


# --- Which integration: 404


@pytest.mark.parametrize("which", ["unknown", "out of range", "disabled", "slack", "no secret"])
def test_only_an_enabled_webhook_integration_with_a_secret_is_served(client, integration, which):
    secret = SECRET
    if which == "unknown":
        integration_id = integration.pk + 1000
    elif which == "out of range":
        integration_id = 2**70
    elif which == "disabled":
        Workspace.objects.filter(pk=integration.pk).update(enabled=False)
        integration_id = integration.pk
    elif which == "slack":
        integration_id = Workspace.objects.create(
            platform=Workspace.Platform.SLACK, external_id="T0TEAM", signing_secret=SECRET
        ).pk
    else:  # an HMAC with the empty key is one anybody can make
        Workspace.objects.filter(pk=integration.pk).update(signing_secret="")
        integration_id, secret = integration.pk, ""
    body = payload(QUESTION)

    response = post(client, integration_id, body, signed(body, secret=secret))

    assert response.status_code == 404, response.content
    assert response.json()["detail"]
    assert not Question.objects.exists() and not LinkToken.objects.exists()


def test_only_post_is_answered(client, integration):
    response = client.get(f"/integrations/webhook/{integration.pk}/")

    assert response.status_code == 405


# --- Not a question: 400


SHORT = "Is breakfast included?"
BAD_BODIES = {
    "not JSON": (b"user=W0ALICE&text=hello", "JSON"),
    "a JSON array": (b'["W0ALICE", "hello"]', "object"),
    "a JSON string": (b'"hello"', "object"),
    "no user": (json.dumps({"text": SHORT}).encode(), "user"),
    "user not a string": (json.dumps({"user": 42, "text": SHORT}).encode(), "user"),
    "user empty": (payload(SHORT, user=""), "user"),
    "user too long": (payload(SHORT, user="W" * 65), "user"),
    "no text": (json.dumps({"user": PLATFORM_USER}).encode(), "text"),
    "text not a string": (json.dumps({"user": PLATFORM_USER, "text": ["hi"]}).encode(), "text"),
    "text empty": (payload(""), "text"),
    "text only spaces": (payload(" \n\t "), "text"),
    "text too long": (payload("x" * 51), "50"),
    "text with NUL": (payload("hotel\u0000cost"), "text"),
    "text with a lone surrogate": (payload("hotel \ud800 cost"), "text"),
    "user with NUL": (payload(SHORT, user="W0\u0000ALICE"), "user"),
    "response_url not a string": (payload(SHORT, response_url=["http://x.test/"]), "response_url"),
    "response_url not http": (payload(SHORT, response_url="ftp://x.test/hook"), "response_url"),
    "response_url not a URL": (payload(SHORT, response_url="hooks/answer"), "response_url"),
    "response_url with spaces": (
        payload(SHORT, response_url="http://x .test/hook"),
        "response_url",
    ),
    "response_url bad port": (payload(SHORT, response_url="http://x.test:99999/h"), "response_url"),
    "response_url too long": (
        payload(SHORT, response_url="https://x.test/" + "a" * 500),
        "response_url",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_signed_body_that_is_not_a_question_is_400(client, integration, settings, case):
    settings.CHAT_MAX_QUESTION_CHARS = 50
    body, named = BAD_BODIES[case]

    response = post(client, integration.pk, body)

    assert response.status_code == 400, response.content
    assert named in response.json()["detail"]
    assert not Question.objects.exists() and not LinkToken.objects.exists()


def test_a_question_of_exactly_the_maximum_length_is_accepted(client, integration, settings):
    settings.CHAT_MAX_QUESTION_CHARS = 50

    response = post(client, integration.pk, payload("x" * 50))

    assert response.status_code == 200, response.content
    assert Question.objects.get().text == "x" * 50


@pytest.mark.parametrize("event_id", ["e" * 65, "evt\u00e9"])
def test_an_unusable_webhook_id_is_400(client, integration, event_id):
    response = post(client, integration.pk, payload(), HTTP_X_WEBHOOK_ID=event_id)

    assert response.status_code == 400, response.content
    assert "X-Webhook-Id" in response.json()["detail"]
    assert not Question.objects.exists()


# --- People not linked yet


def test_an_unlinked_user_gets_a_link_and_no_retrieval(client, integration, settings):
    settings.PUBLIC_URL = "http://chat.example.test"
    travel_documents()
    asker = factories.user()

    response = post(client, integration.pk, payload(QUESTION))

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == Question.Status.LINK_PROMPTED
    url = assert_link_prompt(body["text"], settings.PUBLIC_URL)
    assert "180" not in body["text"] and "Travel policy" not in body["text"]
    assert not AnswerAudit.objects.exists()
    assert Question.objects.get().status == Question.Status.LINK_PROMPTED
    # The link binds this platform user, in this integration, to whoever opens it.
    client.force_login(asker)
    assert client.post(url.removeprefix(settings.PUBLIC_URL)).status_code == 200
    identity = LinkedIdentity.objects.get()
    assert (identity.workspace, identity.external_user_id, identity.user) == (
        integration,
        PLATFORM_USER,
        asker,
    )


def test_an_unlinked_user_with_a_response_url_gets_the_link_there(
    client, integration, fake_slack, settings, django_capture_on_commit_callbacks
):
    travel_documents()
    url = fake_slack.response_url("unlinked")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, integration.pk, payload(QUESTION, response_url=url))
    assert response.status_code == 202 and len(callbacks) == 1
    delivery = services.question_answer(question_id=Question.objects.get().pk)

    assert delivery.status == Question.Status.LINK_PROMPTED and delivery.delivered
    [posted] = replies_at(fake_slack, "unlinked")
    assert posted == {"response_type": "ephemeral", "text": delivery.text}
    assert_link_prompt(posted["text"], settings.PUBLIC_URL)
    assert not AnswerAudit.objects.exists()


# --- Retried deliveries


def test_a_repeated_webhook_id_with_a_response_url_is_answered_once(
    client, integration, fake_slack, django_capture_on_commit_callbacks
):
    url = fake_slack.response_url("twice")
    body = payload(QUESTION, response_url=url)

    now = int(time.time())  # each delivery signed anew, so only the id can match
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = post(
            client, integration.pk, body, signed(body, timestamp=now), HTTP_X_WEBHOOK_ID="evt-42"
        )
        again = post(
            client,
            integration.pk,
            body,
            signed(body, timestamp=now - 1),
            HTTP_X_WEBHOOK_ID="evt-42",
        )

    assert (first.status_code, first.json()) == (202, {"text": WORKING_ON_IT})
    assert (again.status_code, again.json()) == (200, {"text": ALREADY_RECEIVED})
    assert len(callbacks) == 1 and Question.objects.count() == 1
    services.question_answer(question_id=Question.objects.get().pk)
    assert len(replies_at(fake_slack, "twice")) == 1


def test_a_repeated_webhook_id_without_a_response_url_is_answered_once(client, integration):
    body, now = payload(QUESTION), int(time.time())  # each delivery signed anew
    first = post(
        client, integration.pk, body, signed(body, timestamp=now), HTTP_X_WEBHOOK_ID="evt-43"
    )
    again = post(
        client, integration.pk, body, signed(body, timestamp=now - 1), HTTP_X_WEBHOOK_ID="evt-43"
    )
    other = post(
        client, integration.pk, body, signed(body, timestamp=now - 2), HTTP_X_WEBHOOK_ID="evt-44"
    )

    assert first.json()["status"] == Question.Status.LINK_PROMPTED
    assert (again.status_code, again.json()) == (200, {"text": ALREADY_RECEIVED})
    assert other.json()["status"] == Question.Status.LINK_PROMPTED
    assert Question.objects.count() == 2 and LinkToken.objects.count() == 2


def test_without_a_webhook_id_every_request_is_a_new_question(client, integration):
    now = int(time.time())
    post(client, integration.pk, payload(QUESTION), signed(payload(QUESTION), timestamp=now))
    post(client, integration.pk, payload(QUESTION), signed(payload(QUESTION), timestamp=now - 1))

    assert Question.objects.count() == 2


def test_a_replayed_request_is_answered_once_whatever_id_it_claims(client, integration):
    headers = signed(payload(QUESTION))
    first = post(client, integration.pk, payload(QUESTION), headers, HTTP_X_WEBHOOK_ID="a")
    replay = post(client, integration.pk, payload(QUESTION), headers, HTTP_X_WEBHOOK_ID="b")

    assert first.status_code == 200 and "link" in first.json()["text"]
    assert replay.json() == {"text": "Already received."}
    assert Question.objects.count() == 1


def test_answers_are_posted_only_to_allowed_hosts(client, integration, settings):
    settings.WEBHOOK_RESPONSE_URL_HOSTS = ["hooks.example.test"]
    internal = payload(QUESTION, response_url="http://127.0.0.1:8001/v1/completions")

    response = post(client, integration.pk, internal)

    assert response.status_code == 400
    assert "WEBHOOK_RESPONSE_URL_HOSTS" in response.json()["detail"]
    assert Question.objects.count() == 0


# --- Failures and logs


def test_a_model_that_is_down_is_a_failed_answer_not_a_500(client, integration, model_down):
    staff, _ = travel_documents()
    link(integration, factories.user(roles=[staff]))

    response = post(client, integration.pk, payload(QUESTION))

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == Question.Status.FAILED and body["text"]
    assert "180" not in body["text"]


def test_no_secret_signature_question_or_link_is_logged(
    client, integration, fake_slack, settings, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    body = payload(QUESTION)
    good = signed(body)
    queued = payload(QUESTION, response_url=fake_slack.response_url("logs"))

    answered = post(client, integration.pk, body, good)
    post(client, integration.pk, body, signed(body, secret="wrong-secret"))
    post(client, integration.pk, payload(QUESTION, response_url="ftp://x.test/"))
    with django_capture_on_commit_callbacks(execute=False):
        post(client, integration.pk, queued)
    services.question_answer(question_id=Question.objects.get(response_url__startswith="http").pk)

    link_url = assert_link_prompt(answered.json()["text"], settings.PUBLIC_URL)
    records = [r.getMessage() for r in caplog.records]
    assert any("request refused" in r for r in records), records
    logged = "\n".join(records + [repr(r.args) for r in caplog.records])
    forbidden = [SECRET, good["HTTP_X_WEBHOOK_SIGNATURE"][3:], QUESTION, link_url]
    for value in forbidden:
        assert value not in logged
