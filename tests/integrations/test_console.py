"""The console's chat platform pages: workspaces (superusers), linked identities (whoever
manages the user) and the questions received (auditors, every read logged).

The rules are a table, one row per action and one column per actor, each cell an actual
attempt through the console that either does what it says or fails and leaves the data
as it was."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.models import AccessLogEntry
from accounts.policy import ManagementDenied, actor_for
from chatbot.models import AnswerAudit, Conversation, Message
from integrations import services
from integrations.models import LinkedIdentity, Question, Workspace
from tests import factories

pytestmark = pytest.mark.django_db

ADMIN = "/admin/integrations"
QUESTION_TEXT = "What is the severance package of the Harlow plant closure?"
ANSWER_TEXT = "The package is in the restructuring plan."

ACTORS = ["superuser", "user_manager", "role_manager", "auditor", "staff", "ordinary"]

# Y: allowed. A refusal is N: 403 from the console; L: the login page (not staff, so no
# console at all); or S: the row is outside the actor's scope, so the action selects nothing.
Y, N, L, S = True, "403", "login", "out of scope"


@dataclass
class World:
    roles: dict
    users: dict
    slack: Workspace
    plain_identity: LinkedIdentity
    staff_identity: LinkedIdentity
    question: Question
    message: Message
    audit: AnswerAudit


def build_world() -> World:
    roles = {n: factories.role(n) for n in ("everyone", "finance", "legal")}
    users = {
        "superuser": factories.superuser("root"),
        "user_manager": factories.grant(
            factories.user(username="ugo", is_staff=True, roles=[roles["everyone"]]),
            "manage_users",
        ),
        "role_manager": factories.user(
            username="fiona", is_staff=True, roles=[roles["everyone"]], manages=[roles["finance"]]
        ),
        "auditor": factories.grant(
            factories.user(username="aud", is_staff=True, roles=[roles["everyone"]]),
            "audit_conversations",
        ),
        # Every Django model permission (integrations' included), none of the two grants.
        "staff": factories.user(username="max", is_staff=True, roles=[roles["everyone"]]),
        "ordinary": factories.user(username="eve", roles=[roles["everyone"]]),
        "plain_target": factories.user(username="pat", roles=[roles["everyone"]]),
        "staff_target": factories.user(username="sam", is_staff=True, roles=[roles["finance"]]),
    }
    users["staff"].user_permissions.set(
        Permission.objects.exclude(codename__in=["manage_users", "audit_conversations"])
    )
    slack = Workspace.objects.create(platform="slack", external_id="T0VELUNA", name="Veluna")
    slack.channel_roles.set([roles["everyone"]])
    plain_identity = LinkedIdentity.objects.create(
        workspace=slack, external_user_id="U0PLAINPAT", user=users["plain_target"]
    )
    staff_identity = LinkedIdentity.objects.create(
        workspace=slack, external_user_id="U0STAFFSAM", user=users["staff_target"]
    )
    conversation = Conversation.objects.create(owner=users["plain_target"], title="Severance")
    message = Message.objects.create(conversation=conversation, role="assistant", text=ANSWER_TEXT)
    audit = AnswerAudit.objects.create(
        username="pat", question=QUESTION_TEXT, message=message, outcome="answered"
    )
    question = Question.objects.create(
        workspace=slack,
        kind=Question.Kind.DIRECT,
        external_user_id="U0PLAINPAT",
        channel_id="D0PATDM",
        channel_type="im",
        ts="1700000000.000100",
        text=QUESTION_TEXT,
        status=Question.Status.ANSWERED,
        message=message,
    )
    AccessLogEntry.objects.all().delete()
    return World(roles, users, slack, plain_identity, staff_identity, question, message, audit)


@pytest.fixture
def world(settings) -> World:
    # A workspace added in the console starts from these defaults (services.workspace_for).
    settings.SLACK_CHANNEL_ROLES = []
    settings.SLACK_AUTO_LINK_BY_EMAIL = False
    return build_world()


def _console(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _channel_roles(workspace) -> list[str]:
    return sorted(
        Workspace.objects.get(pk=workspace.pk).channel_roles.values_list("name", flat=True)
    )


def _workspace_form(workspace, **changes) -> dict:
    data = {
        "name": workspace.name,
        "enabled": "on" if workspace.enabled else None,
        "auto_link_by_email": "on" if workspace.auto_link_by_email else None,
        "channel_roles": [r.pk for r in workspace.channel_roles.all()],
        "signing_secret": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def _unlink(client, identity):
    return client.post(
        f"{ADMIN}/linkedidentity/",
        {"action": "unlink_selected", "_selected_action": [identity.pk]},
    )


def _changes() -> list[AccessLogEntry]:
    """Access-log entries of changes (audited reads are logged too, as audit.*)."""
    return list(AccessLogEntry.objects.exclude(action__startswith="audit."))


def _reads() -> list[AccessLogEntry]:
    return list(AccessLogEntry.objects.filter(action__startswith="audit."))


# (attempt, happened or None for a read, what an allowed read shows, the logged change)
ACTIONS = {
    "view workspace list": (
        lambda c, w: c.get(f"{ADMIN}/workspace/"),
        None,
        "T0VELUNA",
        None,
    ),
    "change a workspace's channel roles": (
        lambda c, w: c.post(
            f"{ADMIN}/workspace/{w.slack.pk}/change/",
            _workspace_form(w.slack, channel_roles=[w.roles["everyone"].pk, w.roles["legal"].pk]),
        ),
        lambda w: _channel_roles(w.slack) == ["everyone", "legal"],
        None,
        lambda e, w: (
            e.action == AccessLogEntry.Action.WORKSPACE_CHANGED
            and e.target_id == w.slack.pk
            and e.before["channel_roles"] == ["everyone"]
            and e.after["channel_roles"] == ["everyone", "legal"]
        ),
    ),
    "add a webhook workspace": (
        lambda c, w: c.post(
            f"{ADMIN}/workspace/add/",
            {
                "platform": "webhook",
                "external_id": "acme-chat",
                "name": "Acme chat",
                "enabled": "on",
                "channel_roles": [w.roles["everyone"].pk],
                "signing_secret": "",
            },
        ),
        lambda w: Workspace.objects.filter(platform="webhook", external_id="acme-chat").exists(),
        None,
        lambda e, w: (
            e.action == AccessLogEntry.Action.WORKSPACE_CREATED
            and e.before == {}
            and {k: v for k, v in e.after.items() if k != "signing_secret"}
            == {
                "platform": "webhook",
                "external_id": "acme-chat",
                "name": "Acme chat",
                "enabled": True,
                "auto_link_by_email": False,
                "channel_roles": ["everyone"],
            }
            and len(e.after["signing_secret"]) == 12  # a fingerprint, not the secret
        ),
    ),
    "delete a workspace": (
        lambda c, w: c.post(f"{ADMIN}/workspace/{w.slack.pk}/delete/", {"post": "yes"}),
        lambda w: not Workspace.objects.filter(pk=w.slack.pk).exists(),
        None,
        lambda e, w: (
            e.action == AccessLogEntry.Action.WORKSPACE_DELETED
            and e.before["channel_roles"] == ["everyone"]
            and e.before["external_id"] == w.slack.external_id
            and e.after == {}
        ),
    ),
    "view identities": (
        lambda c, w: c.get(f"{ADMIN}/linkedidentity/"),
        None,
        "U0PLAINPAT",
        None,
    ),
    "unlink an identity of a plain user": (
        lambda c, w: _unlink(c, w.plain_identity),
        lambda w: not LinkedIdentity.objects.filter(pk=w.plain_identity.pk).exists(),
        None,
        lambda e, w: (
            e.action == AccessLogEntry.Action.IDENTITY_UNLINKED
            and e.target_id == w.users["plain_target"].pk
            and e.before["external_user_id"] == "U0PLAINPAT"
        ),
    ),
    "unlink an identity of a staff user": (
        lambda c, w: _unlink(c, w.staff_identity),
        lambda w: not LinkedIdentity.objects.filter(pk=w.staff_identity.pk).exists(),
        None,
        lambda e, w: (
            e.action == AccessLogEntry.Action.IDENTITY_UNLINKED
            and e.target_id == w.users["staff_target"].pk
            and e.before["external_user_id"] == "U0STAFFSAM"
        ),
    ),
    "view questions list": (
        lambda c, w: c.get(f"{ADMIN}/question/"),
        None,
        "D0PATDM",
        None,
    ),
}

MATRIX = {
    # columns: superuser, user_manager, role_manager, auditor, staff, ordinary (ACTORS)
    "view workspace list":                  [Y, N, N, N, N, L],
    "change a workspace's channel roles":   [Y, N, N, N, N, L],
    "add a webhook workspace":              [Y, N, N, N, N, L],
    "delete a workspace":                   [Y, N, N, N, N, L],
    "view identities":                      [Y, Y, N, N, N, L],
    "unlink an identity of a plain user":   [Y, Y, N, N, N, L],
    "unlink an identity of a staff user":   [Y, S, N, N, N, L],
    "view questions list":                  [Y, N, N, Y, N, L],
}  # fmt: skip

CASES = [
    pytest.param(actor, action, MATRIX[action][i], id=f"{actor}-{action}")
    for action in MATRIX
    for i, actor in enumerate(ACTORS)
]


def test_the_table_has_a_row_for_every_action():
    assert set(ACTIONS) == set(MATRIX)
    assert all(len(row) == len(ACTORS) for row in MATRIX.values())


@pytest.mark.parametrize("actor,action,expected", CASES)
def test_console(world, actor, action, expected):
    attempt, happened, shown_marker, logged = ACTIONS[action]
    response = attempt(_console(world.users[actor]), world)

    assert response.status_code < 500
    if expected is Y:
        assert response.status_code in (200, 302)
        assert not response.get("Location", "").startswith("/admin/login/")
    elif expected == N:
        assert response.status_code == 403
    elif expected == L:
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    else:  # S: the action ran on the actor's rows, and this one is not among them
        assert response.status_code == 302
        assert response["Location"].endswith("/linkedidentity/")

    if happened is None:
        shown = response.status_code == 200 and shown_marker in response.content.decode()
        assert shown is (expected is Y)
        assert _changes() == []
        if action == "view questions list":
            assert QUESTION_TEXT not in response.content.decode()
            reads = [e for e in _reads() if e.target_type == "chat_question_list"]
            assert len(reads) == (1 if expected is Y else 0)
        return

    assert happened(world) is (expected is Y)
    changes = _changes()
    if expected is Y:
        assert len(changes) == 1, changes
        assert logged(changes[0], world), (changes[0].before, changes[0].after)
        assert changes[0].actor_id == world.users[actor].pk
    else:
        assert changes == []
        assert Workspace.objects.filter(pk=world.slack.pk).exists()
        assert _channel_roles(world.slack) == ["everyone"]
        assert LinkedIdentity.objects.count() == 2
        assert not Workspace.objects.filter(external_id="acme-chat").exists()
    assert not LogEntry.objects.exists()  # the access log is the one record


# Workspaces


def test_a_staff_user_crafting_channel_roles_is_refused_and_nothing_changes(world):
    staff = factories.grant(
        factories.user(username="crafty", is_staff=True), "change_workspace", "view_workspace"
    )
    client = _console(staff)
    url = f"{ADMIN}/workspace/{world.slack.pk}/change/"
    everything = [r.pk for r in world.roles.values()]

    assert client.get(url).status_code == 403
    crafted = client.post(url, _workspace_form(world.slack, channel_roles=everything))
    assert crafted.status_code == 403
    added = client.post(
        f"{ADMIN}/workspace/add/",
        {"platform": "slack", "external_id": "T0EVIL", "channel_roles": everything},
    )
    assert added.status_code == 403
    assert _channel_roles(world.slack) == ["everyone"]
    assert not Workspace.objects.filter(external_id="T0EVIL").exists()
    # The service refuses them too, whatever the page does.
    with pytest.raises(ManagementDenied):
        services.workspace_update(
            actor=actor_for(user=staff), workspace=world.slack, channel_roles=everything
        )
    assert _channel_roles(world.slack) == ["everyone"] and _changes() == []


def test_a_superuser_change_is_applied_by_the_service_and_logged_once(world):
    client = _console(world.users["superuser"])
    response = client.post(
        f"{ADMIN}/workspace/{world.slack.pk}/change/",
        _workspace_form(
            world.slack,
            name="Veluna HQ",
            enabled=None,
            auto_link_by_email="on",
            channel_roles=[world.roles["finance"].pk],
        ),
    )

    assert response.status_code == 302
    workspace = Workspace.objects.get(pk=world.slack.pk)
    assert (workspace.name, workspace.enabled, workspace.auto_link_by_email) == (
        "Veluna HQ",
        False,
        True,
    )
    assert _channel_roles(workspace) == ["finance"]
    [entry] = _changes()
    assert entry.action == AccessLogEntry.Action.WORKSPACE_CHANGED
    unchanged = {"platform": "slack", "external_id": world.slack.external_id, "signing_secret": ""}
    assert entry.before == {
        **unchanged,
        "name": "Veluna",
        "enabled": True,
        "auto_link_by_email": False,
        "channel_roles": ["everyone"],
    }
    assert entry.after == {
        **unchanged,
        "name": "Veluna HQ",
        "enabled": False,
        "auto_link_by_email": True,
        "channel_roles": ["finance"],
    }


def test_saving_a_workspace_unchanged_logs_nothing(world):
    client = _console(world.users["superuser"])
    response = client.post(
        f"{ADMIN}/workspace/{world.slack.pk}/change/", _workspace_form(world.slack)
    )
    assert response.status_code == 302
    assert _changes() == [] and _channel_roles(world.slack) == ["everyone"]


def test_the_workspace_list_shows_roles_and_counts(world):
    page = _console(world.users["superuser"]).get(f"{ADMIN}/workspace/").content.decode()
    assert "Chat workspaces" in page
    row = page[page.index("T0VELUNA") :]
    assert '<td class="field-channel_role_list">everyone</td>' in row
    assert '<td class="field-identity_count">2</td>' in row
    assert '<td class="field-question_count">1</td>' in row


def test_adding_a_webhook_generates_a_secret_shown_once_and_never_logged(world):
    client = _console(world.users["superuser"])
    form = client.get(f"{ADMIN}/workspace/add/").content.decode()
    assert 'type="password" name="signing_secret"' in form
    response = client.post(
        f"{ADMIN}/workspace/add/",
        {"platform": "webhook", "external_id": "acme-chat", "enabled": "on", "signing_secret": ""},
        follow=True,
    )

    workspace = Workspace.objects.get(platform="webhook", external_id="acme-chat")
    secret = workspace.signing_secret
    assert len(secret) >= 43
    assert response.status_code == 200 and secret in response.content.decode()
    again = client.get(f"{ADMIN}/workspace/{workspace.pk}/change/").content.decode()
    assert secret not in again and 'name="signing_secret"' in again
    assert secret not in client.get(f"{ADMIN}/workspace/").content.decode()
    [entry] = _changes()
    assert secret not in str(entry.before) + str(entry.after) + entry.target_label


def test_a_typed_webhook_secret_is_kept_a_blank_one_keeps_the_old_and_short_ones_fail(world):
    hook = Workspace.objects.create(platform="webhook", external_id="acme", signing_secret="s" * 40)
    client = _console(world.users["superuser"])
    url = f"{ADMIN}/workspace/{hook.pk}/change/"

    assert client.post(url, _workspace_form(hook, name="Acme")).status_code == 302
    assert Workspace.objects.get(pk=hook.pk).signing_secret == "s" * 40

    short = client.post(url, _workspace_form(hook, signing_secret="too-short"))
    assert short.status_code == 200 and "at least 32 characters" in short.content.decode()
    assert Workspace.objects.get(pk=hook.pk).signing_secret == "s" * 40

    assert client.post(url, _workspace_form(hook, signing_secret="n" * 48)).status_code == 302
    assert Workspace.objects.get(pk=hook.pk).signing_secret == "n" * 48
    assert len(_changes()) == 2


def test_a_slack_workspace_takes_no_secret_from_the_console(world):
    client = _console(world.users["superuser"])
    url = f"{ADMIN}/workspace/{world.slack.pk}/change/"
    assert 'name="signing_secret"' not in client.get(url).content.decode()

    crafted = client.post(url, _workspace_form(world.slack, signing_secret="x" * 40))
    assert crafted.status_code == 200
    assert Workspace.objects.get(pk=world.slack.pk).signing_secret == ""
    refused = client.post(
        f"{ADMIN}/workspace/add/",
        {"platform": "slack", "external_id": "T0OTHER", "signing_secret": "x" * 40},
    )
    assert refused.status_code == 200 and not Workspace.objects.filter(external_id="T0OTHER")
    assert _changes() == []


def test_deleting_a_workspace_takes_its_identities_and_questions(world):
    client = _console(world.users["superuser"])
    url = f"{ADMIN}/workspace/{world.slack.pk}/delete/"
    confirm = client.get(url).content.decode()
    assert "2 linked identities and 1 questions" in confirm

    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not LinkedIdentity.objects.exists() and not Question.objects.exists()


# Linked identities


def test_a_user_manager_sees_and_unlinks_only_identities_of_users_they_manage(world):
    client = _console(world.users["user_manager"])
    index = client.get("/admin/").content.decode()
    assert "Linked identities" in index and f"{ADMIN}/workspace/" not in index

    listed = client.get(f"{ADMIN}/linkedidentity/").content.decode()
    assert "U0PLAINPAT" in listed and "U0STAFFSAM" not in listed
    assert "U0PLAINPAT" in client.get(f"{ADMIN}/linkedidentity/?q=pat").content.decode()
    assert "U0PLAINPAT" not in client.get(f"{ADMIN}/linkedidentity/?q=sam").content.decode()
    assert "U0STAFFSAM" not in client.get(f"{ADMIN}/linkedidentity/?q=U0STAFF").content.decode()

    # The staff user's identity, asked for directly: as if it did not exist.
    staff_url = f"{ADMIN}/linkedidentity/{world.staff_identity.pk}/delete/"
    assert client.post(staff_url, {"post": "yes"}).status_code == 302
    # Both selected: only the one they manage goes.
    client.post(
        f"{ADMIN}/linkedidentity/",
        {
            "action": "unlink_selected",
            "_selected_action": [world.plain_identity.pk, world.staff_identity.pk],
        },
    )
    assert list(LinkedIdentity.objects.values_list("external_user_id", flat=True)) == ["U0STAFFSAM"]
    [entry] = _changes()
    assert entry.action == AccessLogEntry.Action.IDENTITY_UNLINKED
    assert entry.target_label == "pat"


def test_the_identity_list_filters_by_workspace(world):
    other = Workspace.objects.create(platform="webhook", external_id="acme")
    LinkedIdentity.objects.create(
        workspace=other, external_user_id="ACME-PAT", user=world.users["plain_target"]
    )
    client = _console(world.users["superuser"])
    page = client.get(f"{ADMIN}/linkedidentity/?workspace__id__exact={other.pk}")
    assert "ACME-PAT" in page.content.decode() and "U0PLAINPAT" not in page.content.decode()


def test_unlinking_from_the_identity_page_goes_through_the_service(world):
    client = _console(world.users["superuser"])
    url = f"{ADMIN}/linkedidentity/{world.staff_identity.pk}/delete/"
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not LinkedIdentity.objects.filter(pk=world.staff_identity.pk).exists()
    [entry] = _changes()
    assert entry.action == AccessLogEntry.Action.IDENTITY_UNLINKED
    assert entry.before["user"] == "sam"


def test_identities_are_never_added_or_changed_in_the_console(world):
    client = _console(world.users["superuser"])
    assert client.get(f"{ADMIN}/linkedidentity/add/").status_code == 403
    assert (
        client.post(
            f"{ADMIN}/linkedidentity/add/",
            {
                "workspace": world.slack.pk,
                "external_user_id": "U0NEW",
                "user": world.users["superuser"].pk,
            },
        ).status_code
        == 403
    )
    changed = client.post(
        f"{ADMIN}/linkedidentity/{world.plain_identity.pk}/change/",
        {
            "workspace": world.slack.pk,
            "external_user_id": "U0PLAINPAT",
            "user": world.users["ordinary"].pk,
        },
    )
    assert changed.status_code == 403
    assert (
        LinkedIdentity.objects.get(pk=world.plain_identity.pk).user == world.users["plain_target"]
    )
    assert LinkedIdentity.objects.count() == 2 and _changes() == []


# Questions


def test_the_question_text_is_only_on_its_page_and_every_read_is_logged(world):
    client = _console(world.users["auditor"])

    listed = client.get(f"{ADMIN}/question/").content.decode()
    assert "Questions from chat platforms" in listed
    assert QUESTION_TEXT not in listed and "U0PLAINPAT" in listed
    assert f"/admin/chatbot/message/{world.message.pk}/change/" in listed
    assert f"/admin/chatbot/answeraudit/{world.audit.pk}/change/" in listed
    [list_read] = _reads()
    assert list_read.action == AccessLogEntry.Action.AUDIT_READ
    assert list_read.target_type == "chat_question_list" and list_read.after["count"] == 1

    detail = client.get(f"{ADMIN}/question/{world.question.pk}/change/").content.decode()
    assert QUESTION_TEXT in detail
    detail_read = AccessLogEntry.objects.exclude(pk=list_read.pk).get()
    assert detail_read.action == AccessLogEntry.Action.CONVERSATION_READ
    assert (detail_read.target_type, detail_read.target_id) == ("chat_question", world.question.pk)
    assert QUESTION_TEXT not in detail_read.target_label
    assert _changes() == []


def test_questions_cannot_be_searched_by_their_text(world):
    client = _console(world.users["auditor"])
    found = client.get(f"{ADMIN}/question/?q=severance").content.decode()
    assert "U0PLAINPAT" not in found
    assert "U0PLAINPAT" in client.get(f"{ADMIN}/question/?q=U0PLAIN").content.decode()


def test_questions_are_never_added_changed_or_deleted_in_the_console(world):
    client = _console(world.users["superuser"])
    url = f"{ADMIN}/question/{world.question.pk}"
    assert (
        client.post(f"{url}/change/", {"text": "rewritten", "status": "failed"}).status_code == 403
    )
    assert client.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
    assert client.get(f"{ADMIN}/question/add/").status_code == 403
    question = Question.objects.get(pk=world.question.pk)
    assert (question.text, question.status) == (QUESTION_TEXT, Question.Status.ANSWERED)
    assert Question.objects.count() == 1 and _changes() == []
