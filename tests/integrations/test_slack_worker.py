"""The whole Slack path with every part running: a signed slash command to the web app,
the acknowledgement, a real `celery worker -Q answers` writing the answer with the real
model, and the reply at the command's response_url (the stand-in Slack). A stranger is
asked to link their account first; once linked, they are answered from their roles."""

import json
from pathlib import Path

import pytest

from chatbot.models import AnswerAudit
from integrations.models import LinkedIdentity, Question, Workspace
from tests import factories
from tests.integrations import blockkit_preview
from tests.integrations.conftest import TEAM_ID, post_slash, slash_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]

LONDON = "What is the maximum hotel cost per night in London?"
# The answer as Slack would show it (README's picture: docs/slack-answer.png is a copy).
PREVIEW = Path(__file__).resolve().parents[2] / "test-output" / "slack" / "worker-answer.png"


def test_a_stranger_links_their_account_and_gets_a_cited_answer(answer_worker, fake_slack, client):
    staff = factories.role("staff")
    factories.travel_policy(roles=[staff])
    nora = factories.user(username="nora", roles=[staff])
    first_hook = fake_slack.response_url("first")

    ack = post_slash(client, slash_body(LONDON, user_id="U0NORA001", response_url=first_hook))

    assert ack.status_code == 200 and ack.json()["text"].startswith("Working on it")
    prompt = fake_slack.wait_for(lambda p: p["path"] == "/hooks/first")
    assert prompt["body"]["response_type"] == "ephemeral"
    link = prompt["body"]["text"].split("http://chat.example.test", 1)[1].split()[0]
    assert AnswerAudit.objects.count() == 0  # no retrieval for a stranger

    client.force_login(nora)
    assert client.post(link).status_code == 200
    assert LinkedIdentity.objects.get(external_user_id="U0NORA001").user == nora
    client.logout()  # Slack's requests carry no session: the signature is the authentication

    second_hook = fake_slack.response_url("second")
    ack = post_slash(client, slash_body(LONDON, user_id="U0NORA001", response_url=second_hook))
    # The acknowledgement came back before the answer existed: it is written by the worker.
    assert ack.status_code == 200
    assert not [p for p in fake_slack.posts if p["path"] == "/hooks/second"]

    answer = fake_slack.wait_for(lambda p: p["path"] == "/hooks/second", timeout=180)
    blocks = json.dumps(answer["body"]["blocks"])
    assert "180" in answer["body"]["text"] and "Travel policy" in blocks
    question = Question.objects.get(response_url=second_hook)
    assert question.status == "answered" and question.replied_at is not None
    audit = AnswerAudit.objects.get()
    assert (audit.user_id, audit.surface, audit.message_id) == (
        nora.pk,
        "slack",
        question.message_id,
    )
    assert audit.role_ids == [staff.pk]
    assert Workspace.objects.get().external_id == TEAM_ID
    page = blockkit_preview.render_message(answer["body"]["blocks"])
    assert blockkit_preview.screenshot(page, PREVIEW).stat().st_size > 5000
