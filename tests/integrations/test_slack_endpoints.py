"""Slack's endpoints before any answer: the signature is the authentication (every way of
getting it wrong is 401, never 500), url_verification, the immediate acknowledgement, and
each question stored once however Slack delivers it."""

import json
import logging
import time
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from integrations.models import Question, Workspace
from integrations.verification import SignatureRejected, verify_slack_request
from tests.integrations.conftest import (
    BOT_USER_ID,
    SIGNING_SECRET,
    event_body,
    post_event,
    post_slash,
    signed_headers,
    slash_body,
)

pytestmark = pytest.mark.django_db

# Slack's published example (docs: "Verifying requests from Slack").
SLACK_EXAMPLE_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F39770"
    b"0885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10"
    b"d2c447fce8b6703c"
)
SLACK_EXAMPLE_TIMESTAMP = "1531420618"
SLACK_EXAMPLE_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slacks_published_example_verifies_and_one_changed_byte_does_not(settings, monkeypatch):
    settings.SLACK_SIGNING_SECRETS = [SIGNING_SECRET]
    generated = SignatureVerifier(SIGNING_SECRET).generate_signature(
        timestamp=SLACK_EXAMPLE_TIMESTAMP, body=SLACK_EXAMPLE_BODY
    )
    assert generated == SLACK_EXAMPLE_SIGNATURE
    frozen_clock(monkeypatch, int(SLACK_EXAMPLE_TIMESTAMP) + 10)
    headers = {
        "X-Slack-Request-Timestamp": SLACK_EXAMPLE_TIMESTAMP,
        "X-Slack-Signature": SLACK_EXAMPLE_SIGNATURE,
    }
    verify_slack_request(body=SLACK_EXAMPLE_BODY, headers=headers)
    with pytest.raises(SignatureRejected):
        verify_slack_request(body=SLACK_EXAMPLE_BODY.replace(b"foobar", b"foobaz"), headers=headers)


def frozen_clock(monkeypatch, at: float) -> None:
    """Both verifiers' clocks (ours and slack_sdk's) read ``at``."""
    monkeypatch.setattr("integrations.verification.now", lambda: at)
    monkeypatch.setattr("slack_sdk.signature.time", lambda: at)


def _refused(response):
    assert response.status_code == 401, response.content
    assert response.json() == {"detail": "The request signature is missing, stale or wrong."}


@pytest.mark.parametrize(
    ("case", "age_seconds", "accepted"),
    [("now", 0, True), ("300 s old", 300, True), ("301 s old", 301, False),
     ("300 s ahead", -300, True), ("301 s ahead", -301, False)],
)  # fmt: skip
def test_the_timestamp_window_is_five_minutes_either_way(
    client, fake_slack, monkeypatch, case, age_seconds, accepted
):
    now = int(time.time())
    frozen_clock(monkeypatch, now)
    body = slash_body("hello", response_url=fake_slack.response_url("w"))
    headers = signed_headers(body, timestamp=now - age_seconds)
    response = client.post(
        "/integrations/slack/commands/",
        data=body,
        content_type="application/x-www-form-urlencoded",
        **headers,
    )
    if accepted:
        assert response.status_code == 200, case
    else:
        _refused(response)
    assert Question.objects.count() == (1 if accepted else 0)


def _tampered(body: bytes):
    """Every way a request can fail to prove it came from Slack: (headers, body sent)."""
    good = signed_headers(body)
    ts = good["HTTP_X_SLACK_REQUEST_TIMESTAMP"]
    return {
        "no headers": ({}, body),
        "no signature": ({"HTTP_X_SLACK_REQUEST_TIMESTAMP": ts}, body),
        "no timestamp": ({"HTTP_X_SLACK_SIGNATURE": good["HTTP_X_SLACK_SIGNATURE"]}, body),
        "wrong secret": (signed_headers(body, secret="another-secret"), body),
        "signature without v0=": (
            {**good, "HTTP_X_SLACK_SIGNATURE": good["HTTP_X_SLACK_SIGNATURE"][3:]},
            body,
        ),
        "non-numeric timestamp": ({**good, "HTTP_X_SLACK_REQUEST_TIMESTAMP": "12abc"}, body),
        "huge timestamp": ({**good, "HTTP_X_SLACK_REQUEST_TIMESTAMP": "9" * 40}, body),
        "non-ASCII signature": ({**good, "HTTP_X_SLACK_SIGNATURE": "v0=é" + "0" * 63}, body),
        "body changed after signing": (good, body.replace(b"hello", b"HELLO")),
        "body re-encoded after signing": (good, body.decode().replace("+", "%20").encode()),
    }


@pytest.mark.parametrize(
    "case", list(_tampered(slash_body("hello there", response_url="http://127.0.0.1/x")))
)
def test_a_request_not_proven_to_come_from_slack_is_401_and_stores_nothing(
    client, fake_slack, case
):
    body = slash_body("hello there", response_url=fake_slack.response_url("w"))
    headers, sent = _tampered(body)[case]
    for path, content_type in [
        ("/integrations/slack/commands/", "application/x-www-form-urlencoded"),
        ("/integrations/slack/events/", "application/json"),
        ("/integrations/slack/interactions/", "application/x-www-form-urlencoded"),
    ]:
        _refused(client.post(path, data=sent, content_type=content_type, **headers))
    assert Question.objects.count() == 0
    assert Workspace.objects.count() == 0


def test_a_body_that_is_not_utf8_is_refused_even_when_signed(client, fake_slack):
    body = b"team_id=T1&text=\xff\xfe"
    headers = {
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": str(int(time.time())),
        "HTTP_X_SLACK_SIGNATURE": "v0=" + "0" * 64,
    }
    _refused(
        client.post(
            "/integrations/slack/commands/",
            data=body,
            content_type="application/x-www-form-urlencoded",
            **headers,
        )
    )


def test_two_signing_secrets_are_accepted_during_a_rotation(client, fake_slack, settings):
    settings.SLACK_SIGNING_SECRETS = ["the-new-secret", SIGNING_SECRET]
    old = slash_body("hi", response_url=fake_slack.response_url("w"))
    assert post_slash(client, old).status_code == 200
    new = slash_body("hi again", response_url=fake_slack.response_url("w"))
    headers = signed_headers(new, secret="the-new-secret")
    response = client.post(
        "/integrations/slack/commands/",
        data=new,
        content_type="application/x-www-form-urlencoded",
        **headers,
    )
    assert response.status_code == 200
    settings.SLACK_SIGNING_SECRETS = ["the-new-secret"]
    _refused(post_slash(client, slash_body("old secret", response_url="http://127.0.0.1/x")))


def test_without_a_signing_secret_the_endpoints_say_slack_is_not_configured(client, settings):
    settings.SLACK_SIGNING_SECRETS = []
    body = slash_body("hi")
    response = post_slash(client, body)
    assert response.status_code == 503
    assert "SLACK_SIGNING_SECRET" in response.json()["detail"]


def test_allow_lists_refuse_other_workspaces_and_apps(client, fake_slack, settings):
    settings.SLACK_ALLOWED_TEAM_IDS = ["T0ALLOWED"]
    response = post_slash(client, slash_body("hi", response_url=fake_slack.response_url("w")))
    assert response.status_code == 403
    assert Question.objects.count() == 0
    settings.SLACK_ALLOWED_TEAM_IDS = []
    settings.SLACK_ALLOWED_APP_IDS = ["A0OTHERAPP"]
    event = {"type": "app_mention", "user": "U1", "text": "hi", "ts": "1.1", "channel": "C1"}
    assert post_event(client, event_body(event, event_id="Ev1")).status_code == 403
    assert Question.objects.count() == 0


def test_url_verification_answers_its_challenge(client, fake_slack):
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9C"})
    response = post_event(client, body.encode())
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9C"}


def test_ssl_check_gets_an_empty_200(client, fake_slack):
    body = urlencode({"ssl_check": "1", "token": "x"}).encode()
    response = post_slash(client, body)
    assert response.status_code == 200
    assert response.content == b""


def test_a_slash_command_is_acknowledged_at_once_and_answered_by_a_task(
    client, fake_slack, django_capture_on_commit_callbacks
):
    body = slash_body("What is the per diem?", response_url=fake_slack.response_url("ack"))
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = post_slash(client, body)
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"
    assert response.json()["text"].startswith("Working on it")
    # Nothing was answered in the request: the answer is one queued task, not yet run.
    assert len(queued) == 1
    assert fake_slack.posts == []
    question = Question.objects.get()
    assert (question.kind, question.status, question.text) == (
        "command", "pending", "What is the per diem?"
    )  # fmt: skip


def test_an_empty_slash_command_gets_usage_and_no_task(
    client, fake_slack, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = post_slash(client, slash_body("   ", response_url=fake_slack.response_url("u")))
    assert "Ask a question after the command" in response.json()["text"]
    assert queued == [] and Question.objects.count() == 0


def _mention(ts="1700000000.000100", user="U0ALICE01", **extra):
    return {"type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> per diem?",
            "ts": ts, "channel": "C0GENERAL", **extra}  # fmt: skip


def test_retries_and_the_mention_message_pair_are_answered_once(
    client, fake_slack, django_capture_on_commit_callbacks
):
    mention = _mention()
    as_message = {**mention, "type": "message", "channel_type": "im"}
    with django_capture_on_commit_callbacks(execute=True) as queued:
        for body, headers in [
            (event_body(mention, event_id="Ev100"), {}),
            # Slack's retry of the same delivery
            (event_body(mention, event_id="Ev100"),
             {"HTTP_X_SLACK_RETRY_NUM": "1", "HTTP_X_SLACK_RETRY_REASON": "http_timeout"}),
            # the same message as a second event
            (event_body(as_message, event_id="Ev101"), {}),
        ]:  # fmt: skip
            assert post_event(client, body, **headers).status_code == 200
    assert Question.objects.count() == 1
    assert len(queued) == 1
    question = Question.objects.get()
    assert (question.kind, question.text, question.thread_ts) == (
        "mention", "per diem?", "1700000000.000100"
    )  # fmt: skip


@pytest.mark.parametrize(
    "event",
    [
        {"type": "message", "channel_type": "im", "user": "U1", "text": "hi", "ts": "2.1",
         "bot_id": "B0OTHER"},
        {"type": "message", "channel_type": "im", "user": BOT_USER_ID, "text": "hi", "ts": "2.2"},
        {"type": "message", "channel_type": "im", "subtype": "message_changed", "ts": "2.3",
         "message": {"user": "U1", "text": "edited"}},
        {"type": "message", "channel_type": "im", "subtype": "channel_join", "user": "U1",
         "text": "joined", "ts": "2.4"},
        {"type": "message", "channel_type": "channel", "user": "U1", "text": "hi", "ts": "2.5"},
        {"type": "reaction_added", "user": "U1", "reaction": "thumbsup"},
    ],
    ids=["other bot", "our bot", "edit", "join", "channel message", "reaction"],
)  # fmt: skip
def test_bots_our_own_messages_edits_and_other_events_are_ignored(client, fake_slack, event):
    assert (
        post_event(
            client, event_body(event, event_id=f"Ev-{event['ts']}" if "ts" in event else "Ev-r")
        ).status_code
        == 200
    )
    assert Question.objects.count() == 0


def test_malformed_json_is_400_never_500(client, fake_slack):
    for body in [b"{not json", b"[1, 2]", b'"text"']:
        response = post_event(client, body)
        assert response.status_code == 400, body
    assert Question.objects.count() == 0


def test_logs_carry_no_secret_token_signature_or_question(client, fake_slack, caplog):
    question = "What is the secret merger codename Bluebird?"
    body = slash_body(question, response_url=fake_slack.response_url("logs"))
    headers = signed_headers(body)
    with caplog.at_level(logging.DEBUG):
        post_slash(client, body)
        client.post(
            "/integrations/slack/commands/",
            data=body,
            content_type="application/x-www-form-urlencoded",
            **{**headers, "HTTP_X_SLACK_SIGNATURE": "v0=" + "1" * 64},
        )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "signature does not match" in logged  # the refusal is logged, with its reason
    for secret in [SIGNING_SECRET, headers["HTTP_X_SLACK_SIGNATURE"], "Bluebird", "xoxb-"]:
        assert secret not in logged
