"""Answers posted to Slack, made in this process by the task's service with the real model,
posted to the stand-in slack.com: within the linked user's roles in a DM or a slash
command's private reply, within the channel's roles in a channel, a link prompt (and no
retrieval) for a stranger, feedback and sharing that re-check who may read what."""

import json
import logging
from urllib.parse import urlencode

import pytest

from accounts.models import AccessLogEntry
from chatbot.models import AnswerAudit, Feedback
from integrations import services
from integrations.models import LinkedIdentity, Question, ThreadConversation, Workspace
from tests import factories
from tests.integrations.conftest import BOT_USER_ID, TEAM_ID, post_signed

pytestmark = pytest.mark.django_db

LONDON = "What is the maximum hotel cost per night in London?"
REVENUE = "What was the revenue in the third quarter?"
CANARY = "CANARY-FINANCE-7731"


@pytest.fixture
def world(fake_slack):
    everyone, finance = factories.role("everyone"), factories.role("finance")
    travel = factories.travel_policy(roles=[everyone])
    results = factories.indexed_document(
        title="Q3 results",
        text=f"Revenue in the third quarter was 412 million EUR. Board reference {CANARY}.",
        roles=[finance],
    )
    alice = factories.user(username="alice", roles=[everyone, finance])
    eve = factories.user(username="eve", roles=[everyone])
    workspace = services.workspace_for(platform=Workspace.Platform.SLACK, external_id=TEAM_ID)
    workspace.channel_roles.set([everyone])
    for person, slack_id in [(alice, "U0ALICE01"), (eve, "U0EVE0001")]:
        LinkedIdentity.objects.create(workspace=workspace, external_user_id=slack_id, user=person)
    return {"everyone": everyone, "finance": finance, "travel": travel, "results": results,
            "alice": alice, "eve": eve, "workspace": workspace}  # fmt: skip


def ask(world, text, *, kind="direct", user="U0ALICE01", channel="D0ALICE", ts="1.0001", **extra):
    """Receive a question as the views do and run the task's service in this process."""
    received = services.question_receive(
        workspace=world["workspace"],
        kind=kind,
        external_user_id=user,
        channel_id=channel,
        channel_type="im" if kind == "direct" or channel.startswith("D") else "channel",
        ts=ts if kind != "command" else "",
        thread_ts=extra.pop("thread_ts", ts) if kind != "command" else "",
        text=text,
        **extra,
    )
    delivery = services.question_answer(question_id=received.question_id)
    return Question.objects.get(pk=received.question_id), delivery


def posted_text(post) -> str:
    """Everything a Slack user would read in a posted message: text and every block."""
    return post["body"].get("text", "") + json.dumps(post["body"].get("blocks") or [])


def test_a_direct_message_is_answered_in_the_thread_within_the_users_roles(
    world, answering, fake_slack
):
    question, delivery = ask(world, LONDON, user="U0EVE0001", channel="D0EVE", ts="10.1")

    assert delivery.status == "answered"
    post = fake_slack.wait_for(lambda p: p["method"] == "chat.postMessage")
    assert post["authorization"] == "Bearer xoxb-test-token-never-logged"
    assert (post["body"]["channel"], post["body"]["thread_ts"]) == ("D0EVE", "10.1")
    text = posted_text(post)
    assert "180" in text and "Travel policy" in text
    assert "http://chat.example.test/c/" in text  # sources link back to the web app
    audit = AnswerAudit.objects.get()
    assert (audit.surface, audit.channel) == ("slack", f"{TEAM_ID}/D0EVE")
    assert audit.role_ids == [world["everyone"].pk]
    assert audit.message_id == question.message_id and audit.user_id == world["eve"].pk
    actions = next(b for b in post["body"]["blocks"] if b["type"] == "actions")
    assert {e["value"] for e in actions["elements"]} == {
        f"up:{question.message_id}", f"down:{question.message_id}"
    }  # fmt: skip


def test_a_dm_never_answers_from_a_role_the_user_lacks(world, answering, fake_slack):
    ask(world, f"{REVENUE} Quote the board reference.", user="U0EVE0001", channel="D0EVE")

    text = posted_text(fake_slack.wait_for(lambda p: p["method"] == "chat.postMessage"))
    assert CANARY not in text and "412" not in text and "Q3 results" not in text
    audit = AnswerAudit.objects.get()
    assert world["results"].pk not in {r["document_id"] for r in audit.retrieved}


def test_in_a_channel_only_the_channels_roles_are_searched(world, answering, fake_slack):
    # alice may read the results herself, but the channel's roles are only "everyone".
    ask(world, f"{REVENUE} Quote the board reference.", kind="mention", channel="C0GENERAL")

    post = fake_slack.wait_for(lambda p: p["method"] == "chat.postMessage")
    assert post["body"]["channel"] == "C0GENERAL"
    text = posted_text(post)
    assert CANARY not in text and "412" not in text and "Q3 results" not in text
    audit = AnswerAudit.objects.get()
    assert audit.role_ids == [world["everyone"].pk]
    assert world["results"].pk not in {r["document_id"] for r in audit.retrieved}


def test_a_channel_without_channel_roles_gets_an_invitation_to_dm_and_no_retrieval(
    world, fake_slack
):
    world["workspace"].channel_roles.clear()

    _, delivery = ask(world, LONDON, kind="mention", channel="C0GENERAL")

    assert delivery.status == "declined"
    post = fake_slack.wait_for(lambda p: p["method"] == "chat.postMessage")
    assert "direct message" in posted_text(post)
    assert AnswerAudit.objects.count() == 0


def test_a_stranger_gets_a_private_link_prompt_and_no_retrieval(world, fake_slack):
    _, delivery = ask(world, LONDON, kind="mention", user="U0STRANGER", channel="C0GEN")

    assert delivery.status == "link_prompted"
    post = fake_slack.wait_for(lambda p: p["method"] == "chat.postEphemeral")
    assert post["body"]["user"] == "U0STRANGER"  # only the asker sees the link
    assert "http://chat.example.test/integrations/link/" in post["body"]["text"]
    assert not [p for p in fake_slack.posts if p["method"] == "chat.postMessage"]
    assert AnswerAudit.objects.count() == 0


def _link_from(text: str) -> str:
    start = text.index("http://chat.example.test/integrations/link/")
    return text[start:].split()[0].removeprefix("http://chat.example.test")


def test_linking_binds_the_slack_user_once_and_then_answers_as_that_user(
    world, answering, fake_slack, client
):
    newcomer = factories.user(username="nora", roles=[world["everyone"]])
    ask(world, LONDON, user="U0NORA001", channel="D0NORA", ts="20.1")
    link = _link_from(
        fake_slack.wait_for(lambda p: p["method"] == "chat.postMessage")["body"]["text"]
    )

    assert client.get(link).status_code == 302  # sign in first
    client.force_login(newcomer)
    page = client.get(link)
    assert page.status_code == 200 and b"U0NORA001" in page.content and b"nora" in page.content
    assert client.post(link).status_code == 200
    identity = LinkedIdentity.objects.get(external_user_id="U0NORA001")
    assert identity.user == newcomer
    entry = AccessLogEntry.objects.get(action="integration.identity_linked")
    assert entry.actor_id == newcomer.pk and entry.after["external_user_id"] == "U0NORA001"
    assert client.post(link).status_code == 404  # once
    assert LinkedIdentity.objects.filter(external_user_id="U0NORA001").count() == 1

    fake_slack.reset()
    _, delivery = ask(world, LONDON, user="U0NORA001", channel="D0NORA", ts="20.2")
    assert delivery.status == "answered"
    assert AnswerAudit.objects.get().user_id == newcomer.pk


def test_an_expired_link_binds_nothing(world, fake_slack, client):
    url = services.link_token_issue(workspace=world["workspace"], external_user_id="U0LATE")
    from django.utils import timezone

    from integrations.models import LinkToken

    LinkToken.objects.update(expires_at=timezone.now())
    client.force_login(world["eve"])
    path = url.removeprefix("http://chat.example.test")
    assert client.get(path).status_code == 404
    assert client.post(path).status_code == 404
    assert not LinkedIdentity.objects.filter(external_user_id="U0LATE").exists()


def test_follow_ups_in_a_thread_continue_one_conversation(world, fake_slack):
    # Nothing in eve's roles matches these, so no model is needed: not-found answers.
    ask(world, "Who won the office chess cup?", user="U0EVE0001", channel="D0EVE", ts="30.1")
    ask(world, "And the year before?", user="U0EVE0001", channel="D0EVE", ts="30.2",
        thread_ts="30.1")  # fmt: skip

    mapping = ThreadConversation.objects.get()
    assert mapping.user == world["eve"] and mapping.thread_ts == "30.1"
    assert mapping.conversation.messages.count() == 4
    posts = [p for p in fake_slack.posts if p["method"] == "chat.postMessage"]
    assert [p["body"]["thread_ts"] for p in posts] == ["30.1", "30.1"]


def test_a_redelivered_task_posts_once(world, fake_slack):
    question, _ = ask(world, "Who won the office chess cup?", user="U0EVE0001", channel="D0EVE")

    again = services.question_answer(question_id=question.pk)

    assert again.text == ""  # nothing new was written or posted
    assert len([p for p in fake_slack.posts if p["method"] == "chat.postMessage"]) == 1
    assert AnswerAudit.objects.count() == 1


def test_a_reply_slack_refuses_is_recorded_on_the_question(world, fake_slack):
    fake_slack.fail_methods.add("chat.postMessage")

    question, delivery = ask(world, "Who won the chess cup?", user="U0EVE0001", channel="D0EVE")

    assert delivery.delivered is False
    question.refresh_from_db()
    assert question.error == "reply not delivered: channel_not_found"


@pytest.mark.parametrize(
    ("profile", "linked"),
    [({"is_email_confirmed": True}, True), ({"is_email_confirmed": False}, False)],
)
def test_auto_linking_by_email_needs_a_confirmed_address(world, fake_slack, profile, linked):
    world["workspace"].auto_link_by_email = True
    world["workspace"].save()
    mallory = factories.user(username="mallory", roles=[world["everyone"]])
    mallory.email = "mallory@veluna.example"
    mallory.save()
    fake_slack.users["U0MAL0001"] = {"id": "U0MAL0001", "profile": {"email": mallory.email},
                                     **profile}  # fmt: skip

    _, delivery = ask(world, "Who won the chess cup?", user="U0MAL0001", channel="D0MAL")

    assert LinkedIdentity.objects.filter(external_user_id="U0MAL0001").exists() is linked
    assert delivery.status == ("answered" if linked else "link_prompted")
    if linked:
        entry = AccessLogEntry.objects.get(action="integration.identity_linked")
        assert entry.actor_username == "system:auto-link-by-email"


def _click(client, *, user, action_id, value, response_url="", channel="C0GENERAL"):
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "api_app_id": "A0CHATBOT",
        "user": {"id": user},
        "channel": {"id": channel},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "value": value, "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return post_signed(
        client, "/integrations/slack/interactions/", body, "application/x-www-form-urlencoded"
    )


def test_feedback_buttons_rate_the_askers_own_answer_only(world, fake_slack, client):
    question, _ = ask(world, "Who won the chess cup?", user="U0EVE0001", channel="D0EVE")

    response = _click(client, user="U0ALICE01", action_id="feedback:up",
                      value=f"up:{question.message_id}")  # fmt: skip
    assert "Only the person who asked" in response.json()["text"]
    assert Feedback.objects.count() == 0
    response = _click(client, user="U0EVE0001", action_id="feedback:down",
                      value=f"down:{question.message_id}")  # fmt: skip
    assert response.status_code == 200
    feedback = Feedback.objects.get()
    assert (feedback.user, feedback.rating, feedback.message_id) == (
        world["eve"], "down", question.message_id
    )  # fmt: skip


def test_sharing_a_private_answer_rechecks_every_passage_against_the_channel(
    world, answering, fake_slack
):
    hook = fake_slack.response_url("share")
    private, _ = ask(world, f"{REVENUE} Quote the board reference.", kind="command",
                     channel="C0GENERAL", response_url=hook)  # fmt: skip
    reply = fake_slack.wait_for(lambda p: p["method"] == "response_url")
    assert reply["body"]["response_type"] == "ephemeral"
    assert "Share in channel" in posted_text(reply)
    assert AnswerAudit.objects.get().role_ids == sorted(
        [world["everyone"].pk, world["finance"].pk]
    )  # a slash command's reply is private: the user's own roles
    fake_slack.reset()

    shared = services.answer_share(workspace_id=world["workspace"].pk,
                                   external_user_id="U0ALICE01", message_id=private.message_id,
                                   channel_id="C0GENERAL", response_url=hook)  # fmt: skip

    assert shared is False
    refusal = fake_slack.wait_for(lambda p: p["method"] == "response_url")
    assert refusal["body"]["response_type"] == "ephemeral"
    assert "not shared" in refusal["body"]["text"] and CANARY not in posted_text(refusal)

    public, _ = ask(world, LONDON, kind="command", channel="C0GENERAL", response_url=hook)
    fake_slack.reset()
    assert services.answer_share(workspace_id=world["workspace"].pk,
                                 external_user_id="U0ALICE01", message_id=public.message_id,
                                 channel_id="C0GENERAL", response_url=hook)  # fmt: skip
    post = fake_slack.wait_for(lambda p: p["method"] == "response_url")
    assert post["body"]["response_type"] == "in_channel" and "180" in posted_text(post)


def test_nobody_can_share_someone_elses_answer(world, fake_slack):
    question, _ = ask(world, "Who won the chess cup?", kind="command", user="U0EVE0001",
                      channel="C0GENERAL", response_url=fake_slack.response_url("x"))  # fmt: skip
    from django.http import Http404

    with pytest.raises(Http404):
        services.answer_share(workspace_id=world["workspace"].pk, external_user_id="U0ALICE01",
                              message_id=question.message_id, channel_id="C0GENERAL",
                              response_url=fake_slack.response_url("x"))  # fmt: skip


def test_the_bot_mention_is_not_part_of_the_question():
    assert services.question_text(f"<@{BOT_USER_ID}>  what is\n the cap?") == "what is the cap?"
    assert services.question_text("<@U123|ann> hi <@U9>") == "hi"


def test_an_operator_links_a_slack_user_from_the_shell_and_it_is_logged(world):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    call_command("slack_link", "--team", TEAM_ID, "--slack-user", "U0OPS0001", "--username", "eve")

    assert LinkedIdentity.objects.get(external_user_id="U0OPS0001").user == world["eve"]
    entry = AccessLogEntry.objects.get(action="integration.identity_linked")
    assert entry.actor_username == "system:slack_link" and entry.after["how"] == "operator"
    with pytest.raises(CommandError, match="No active user"):
        call_command("slack_link", "--team", TEAM_ID, "--slack-user", "U0X", "--username", "zed")


def test_answering_logs_no_token_question_answer_link_or_response_url(world, fake_slack, caplog):
    hook = fake_slack.response_url("capability-7Qx")
    with caplog.at_level(logging.DEBUG):
        ask(world, "Who won the secret chess cup Bluebird?", user="U0EVE0001", channel="D0EVE")
        ask(world, "Who won the secret chess cup Bluebird?", kind="command", user="U0EVE0001",
            channel="C0GENERAL", response_url=hook)  # fmt: skip
        ask(world, "Who is Kestrel?", user="U0STRANGER", channel="D0STRANGER", ts="9.9")

    link = fake_slack.wait_for(lambda p: "integrations/link/" in p["body"].get("text", ""))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "question" in logged  # the statuses are logged, by question id
    for secret in [
        "xoxb-",
        "Bluebird",
        "Kestrel",
        "capability-7Qx",
        _link_from(link["body"]["text"]),
    ]:
        assert secret not in logged


def test_slack_questions_count_against_the_users_chat_rate_limit(world, fake_slack, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "chat": "2/minute"}
    client = factories.api_client(world["eve"])
    web = client.post("/api/v1/chat/", {"message": "Who won the cup?"}, format="json")
    assert web.status_code == 200  # the web chat used one of the two

    _, first = ask(world, "Who won the chess cup?", user="U0EVE0001", channel="D0EVE", ts="5.1")
    _, second = ask(world, "And the year before?", user="U0EVE0001", channel="D0EVE", ts="5.2")

    assert (first.status, second.status) == ("answered", "declined")
    assert "Too many questions (your limit is 2 per minute)" in second.text
    assert AnswerAudit.objects.filter(surface="slack").count() == 1


def test_auto_linking_without_the_email_scope_falls_back_to_the_link_prompt(world, fake_slack):
    world["workspace"].auto_link_by_email = True
    world["workspace"].save()
    fake_slack.fail_methods.add("users.info")

    _, delivery = ask(world, "Who won the chess cup?", user="U0NOSCOPE", channel="D0NOSCOPE")

    assert delivery.status == "link_prompted"
    assert not LinkedIdentity.objects.filter(external_user_id="U0NOSCOPE").exists()


def test_a_thread_follow_up_leaves_out_earlier_answers_the_asker_can_no_longer_see(
    world, answering, fake_slack, monkeypatch
):
    from inference.client import InferenceClient
    from tests.chatbot.conftest import stored_answer

    prompts = []
    for name in ("generate", "stream", "chat", "stream_chat"):
        original = getattr(InferenceClient, name)

        def recorded(client, prompt, *args, _original=original, **kwargs):
            prompts.append(prompt if isinstance(prompt, str) else json.dumps(list(prompt)))
            return _original(client, prompt, *args, **kwargs)

        monkeypatch.setattr(InferenceClient, name, recorded)
    # Earlier in this DM thread alice was answered from the results, which she may read...
    conversation, _ = stored_answer(
        owner=world["alice"], document=world["results"], text=f"The reference is {CANARY} [1].",
        question="What is the board reference?",
    )  # fmt: skip
    ThreadConversation.objects.create(workspace=world["workspace"], channel_id="D0ALICE",
                                      thread_ts="40.1", user=world["alice"],
                                      conversation=conversation)  # fmt: skip
    world["alice"].roles.remove(world["finance"])  # ...until now.

    ask(world, LONDON, user="U0ALICE01", channel="D0ALICE", ts="40.2", thread_ts="40.1")

    assert prompts, "the follow-up reached the model"
    assert not [p for p in prompts if CANARY in p]
    assert "What is the board reference?" in prompts[0]  # the thread's turns were given
    post = fake_slack.wait_for(lambda p: p["method"] == "chat.postMessage")
    assert CANARY not in posted_text(post) and post["body"]["thread_ts"] == "40.1"
    assert conversation.messages.count() == 4
