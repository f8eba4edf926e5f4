"""Questions from chat platforms, answered within each person's permissions.

Receiving is quick and does no retrieval (the views acknowledge within Slack's 3 seconds):
a question is stored once (``Question``'s unique keys drop retried and duplicate
deliveries) and a task answers it. Answering goes through chatbot.services.chat_reply, the
same path, scope check and audit record as the web chat, with a scope chosen by where the
answer will be read:

- a direct message, or a slash command's reply (which only the asker sees): the linked
  user's own roles;
- a channel (others read it): only the user's roles that are also the workspace's channel
  roles, none by default, and then no retrieval at all.

A person with no linked identity gets a one-time link (only they see it) and no retrieval.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone
from slack_sdk.errors import SlackClientError

from accounts import policy
from accounts.access_log import Action, log_access
from accounts.models import Role, User
from accounts.policy import Actor
from accounts.selectors import Scope, channel_scope, user_scope
from chatbot import selectors as chat_selectors
from chatbot import services as chat_services
from chatbot.failures import EXPECTED_FAILURES, answer_failure, too_long_message
from chatbot.models import AnswerAudit, Feedback, Message
from config.throttling import throttled_message, user_rate_wait
from integrations import webhook
from integrations.models import LinkedIdentity, LinkToken, Question, ThreadConversation, Workspace
from integrations.slack import blocks, client
from knowledge.access import visible_chunk_ids

logger = logging.getLogger(__name__)

Kind = Question.Kind
Status = Question.Status

WORKING_ON_IT = "Working on it: I'll answer from the documents your account may see."
USAGE = "Ask a question after the command, for example: /ask What is the meal per diem?"
CHANNEL_DECLINED = (
    "I can answer in this channel only from documents everyone here may read, and none are "
    "shared with it. Ask me in a direct message and I'll answer from the documents you may see."
)
NOT_SHAREABLE = (
    "This answer was not shared: it draws on documents that not everyone in this channel may read."
)
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
# Where an answer was read, for the answer audit.
_SURFACES = {
    Workspace.Platform.SLACK: AnswerAudit.Surface.SLACK,
    Workspace.Platform.WEBHOOK: AnswerAudit.Surface.WEBHOOK,
    Workspace.Platform.MATTERMOST: AnswerAudit.Surface.MATTERMOST,
}


class NotLinked(Exception):
    """The platform user is not linked to an active app user."""


# --- Workspaces and identities


def workspace_for(*, platform: str, external_id: str) -> Workspace:
    """The workspace, created on its first verified request with the defaults from the
    environment (SLACK_CHANNEL_ROLES, SLACK_AUTO_LINK_BY_EMAIL)."""
    workspace = Workspace.objects.filter(platform=platform, external_id=external_id).first()
    if workspace is not None:
        return workspace
    with transaction.atomic():
        workspace, created = Workspace.objects.get_or_create(
            platform=platform,
            external_id=external_id,
            defaults={"auto_link_by_email": settings.SLACK_AUTO_LINK_BY_EMAIL},
        )
        if created and settings.SLACK_CHANNEL_ROLES:
            workspace.channel_roles.set(Role.objects.filter(name__in=settings.SLACK_CHANNEL_ROLES))
    return workspace


def linked_user(*, workspace: Workspace, external_user_id: str) -> User | None:
    identity = (
        LinkedIdentity.objects.select_related("user")
        .filter(workspace=workspace, external_user_id=external_user_id, user__is_active=True)
        .first()
    )
    return identity.user if identity else None


def link_token_issue(*, workspace: Workspace, external_user_id: str) -> str:
    """A one-time URL that binds this platform user to whoever opens it while logged in."""
    key = secrets.token_urlsafe(32)
    LinkToken.objects.create(
        key_hash=_hash(key),
        workspace=workspace,
        external_user_id=external_user_id,
        expires_at=timezone.now() + timedelta(seconds=settings.CHAT_LINK_TTL_SECONDS),
    )
    return f"{settings.PUBLIC_URL}/integrations/link/{key}/"


def link_token_lookup(*, key: str) -> LinkToken:
    """The unused, unexpired invitation with this key, else Http404 (one answer for all)."""
    token = (
        LinkToken.objects.select_related("workspace")
        .filter(key_hash=_hash(key), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if token is None:
        raise Http404("This link is unknown, used or expired. Ask the bot again for a new one.")
    return token


@transaction.atomic
def link_token_redeem(*, key: str, user: User) -> LinkedIdentity:
    """Bind the invitation's platform user to ``user`` (logged in): once, before it expires.
    A platform user linked before is re-bound (the invitation proves they hold it now)."""
    token = link_token_lookup(key=key)
    token = LinkToken.objects.select_for_update().get(pk=token.pk)
    if token.used_at is not None:
        raise Http404("This link is unknown, used or expired. Ask the bot again for a new one.")
    token.used_at = timezone.now()
    token.save(update_fields=["used_at"])
    identity, _ = LinkedIdentity.objects.update_or_create(
        workspace=token.workspace,
        external_user_id=token.external_user_id,
        defaults={"user": user, "linked_by_email": False},
    )
    _log_link(policy.actor_for(user=user), identity, how="link")
    return identity


@transaction.atomic
def identity_link(
    *, actor: Actor, workspace: Workspace, external_user_id: str, user: User
) -> LinkedIdentity:
    """Link a platform user to ``user`` on an operator's word (the console or a command):
    that is managing ``user`` (checked and logged)."""
    policy.check_manage_user(actor, user)
    identity, _ = LinkedIdentity.objects.update_or_create(
        workspace=workspace,
        external_user_id=external_user_id,
        defaults={"user": user, "linked_by_email": False},
    )
    _log_link(actor, identity, how="operator")
    return identity


def identity_link_by_email(*, workspace: Workspace, external_user_id: str, email: str):
    """Auto-linking (when the workspace allows it): the one active user with this email."""
    if not email:
        return None
    users = list(User.objects.filter(email__iexact=email, is_active=True)[:2])
    if len(users) != 1:
        return None
    try:
        with transaction.atomic():
            identity = LinkedIdentity.objects.create(
                workspace=workspace,
                external_user_id=external_user_id,
                user=users[0],
                linked_by_email=True,
            )
            _log_link(policy.operator(label="auto-link-by-email"), identity, how="email")
    except IntegrityError:  # linked meanwhile
        return linked_user(workspace=workspace, external_user_id=external_user_id)
    return users[0]


@transaction.atomic
def identity_unlink(*, actor: Actor, identity: LinkedIdentity) -> None:
    """Unlinking is managing the user: user managers and superusers (logged)."""
    policy.check_manage_user(actor, identity.user)
    log_access(
        actor=actor,
        action=Action.IDENTITY_UNLINKED,
        target_type="user",
        target_id=identity.user_id,
        target_label=identity.user.username,
        before=_identity_fields(identity),
    )
    identity.delete()


@transaction.atomic
def workspace_create(*, actor: Actor, platform: str, external_id: str, **settings_) -> Workspace:
    """A workspace set up ahead of its first request (a webhook needs one for its secret)."""
    policy.check_manage_integrations(actor)
    roles = settings_.pop("channel_roles", [])
    workspace = Workspace.objects.create(platform=platform, external_id=external_id, **settings_)
    workspace.channel_roles.set(roles)
    log_access(
        actor=actor,
        action=Action.WORKSPACE_CREATED,
        target_type="workspace",
        target_id=workspace.pk,
        target_label=str(workspace),
        after=_workspace_fields(workspace),
    )
    return workspace


@transaction.atomic
def workspace_delete(*, actor: Actor, workspace: Workspace) -> None:
    """Deleting a workspace unlinks its people and drops its questions (logged)."""
    policy.check_manage_integrations(actor)
    log_access(
        actor=actor,
        action=Action.WORKSPACE_DELETED,
        target_type="workspace",
        target_id=workspace.pk,
        target_label=str(workspace),
        before={
            **_workspace_fields(workspace),
            "linked_identities": workspace.identities.count(),
            "questions": workspace.questions.count(),
        },
    )
    workspace.delete()


@transaction.atomic
def workspace_update(*, actor: Actor, workspace: Workspace, **changes) -> Workspace:
    """Channel roles open documents to everyone in a channel: only superusers set them,
    or enable auto-linking (logged, with before and after)."""
    policy.check_manage_integrations(actor)
    before = _workspace_fields(workspace)
    roles = changes.pop("channel_roles", None)
    for name, value in changes.items():
        setattr(workspace, name, value)
    workspace.save()
    if roles is not None:
        workspace.channel_roles.set(roles)
    log_access(
        actor=actor,
        action=Action.WORKSPACE_CHANGED,
        target_type="workspace",
        target_id=workspace.pk,
        target_label=str(workspace),
        before=before,
        after=_workspace_fields(workspace),
    )
    return workspace


def _log_link(actor: Actor, identity: LinkedIdentity, *, how: str) -> None:
    log_access(
        actor=actor,
        action=Action.IDENTITY_LINKED,
        target_type="user",
        target_id=identity.user_id,
        target_label=identity.user.username,
        after={**_identity_fields(identity), "how": how},
    )


def _identity_fields(identity: LinkedIdentity) -> dict:
    return {
        "workspace": str(identity.workspace),
        "external_user_id": identity.external_user_id,
        "user": identity.user.username,
    }


def _workspace_fields(workspace: Workspace) -> dict:
    secret = workspace.signing_secret
    return {
        "platform": workspace.platform,
        "external_id": workspace.external_id,
        # A rotation shows as a new fingerprint; the secret itself is never logged.
        "signing_secret": _hash(secret)[:12] if secret else "",
        "name": workspace.name,
        "enabled": workspace.enabled,
        "auto_link_by_email": workspace.auto_link_by_email,
        "channel_roles": sorted(workspace.channel_roles.values_list("name", flat=True)),
    }


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- Receiving


@dataclass(frozen=True)
class Received:
    question_id: int | None  # None: a duplicate delivery, or nothing to answer
    reason: str = ""


def question_receive(*, workspace: Workspace, **fields) -> Received:
    """Store a question once and enqueue its answer after the commit. A retried delivery
    (same event id) or the second event for one message (same channel and ts) is dropped."""
    from integrations import tasks  # the task module imports these services

    try:
        with transaction.atomic():
            question = Question.objects.create(workspace=workspace, **fields)
            transaction.on_commit(lambda: tasks.answer_question.delay(question.pk))
    except IntegrityError:
        return Received(None, "duplicate")
    return Received(question.pk)


def question_text(raw: str) -> str:
    """The question without mentions of the bot (``<@U123>``) and surrounding space."""
    return " ".join(_MENTION.sub(" ", raw or "").split())


def slack_event_question_fields(event: dict, *, event_id: str, bot_user_ids: set[str]):
    """The Question fields for an app_mention or a direct message, or None for an event
    we do not answer (other types, edits and other subtypes, bots including ourselves)."""
    kind = event.get("type")
    if event.get("subtype") or event.get("bot_id") or event.get("bot_profile"):
        return None
    user = event.get("user") or ""
    if not user or user in bot_user_ids:
        return None
    if kind == "app_mention":
        question_kind = Kind.MENTION
    elif kind == "message" and event.get("channel_type") == "im":
        question_kind = Kind.DIRECT
    else:
        return None
    ts = str(event.get("ts") or "")
    return {
        "kind": question_kind,
        "external_user_id": user,
        "channel_id": str(event.get("channel") or ""),
        "channel_type": "im" if question_kind == Kind.DIRECT else "channel",
        "event_id": event_id,
        "ts": ts,
        "thread_ts": str(event.get("thread_ts") or ts),
        "text": question_text(event.get("text", "")),
    }


# --- Answering (the task body)


@dataclass(frozen=True)
class Delivery:
    """What became of a question: its status and the reply's plain text ("" when another
    delivery had already replied). ``delivered`` is False when posting the reply failed."""

    status: str
    text: str = ""
    delivered: bool = True


def question_answer(*, question_id: int) -> Delivery:
    """Answer a stored question and post the reply once."""
    question = Question.objects.select_related("workspace").get(pk=question_id)
    if question.replied_at is not None:
        return Delivery(question.status)
    workspace = question.workspace
    user = linked_user(workspace=workspace, external_user_id=question.external_user_id)
    if user is None and workspace.auto_link_by_email and workspace.platform == "slack":
        email = client.user_email(user=question.external_user_id)
        user = identity_link_by_email(
            workspace=workspace, external_user_id=question.external_user_id, email=email
        )
    if user is None:
        url = link_token_issue(workspace=workspace, external_user_id=question.external_user_id)
        text = (
            "I don't know who you are in the company's system yet. Open this link and sign in "
            f"to connect your account (it works once, for {settings.CHAT_LINK_TTL_SECONDS // 60}"
            f" minutes): {url}"
        )
        return _deliver(question, Status.LINK_PROMPTED, text, blocks.notice_blocks(text))
    if not question.text:
        return _deliver(question, Status.DECLINED, USAGE, blocks.notice_blocks(USAGE))
    if len(question.text) > settings.CHAT_MAX_QUESTION_CHARS:
        text = too_long_message()
        return _deliver(question, Status.DECLINED, text, blocks.notice_blocks(text))
    scope = _scope_for(question, user)
    if scope is None:
        return _deliver(
            question, Status.DECLINED, CHANNEL_DECLINED, blocks.notice_blocks(CHANNEL_DECLINED)
        )
    wait = user_rate_wait(user=user, scope="chat")
    if wait is not None:
        text = f"{throttled_message('chat')} Try again in {max(1, round(wait))} seconds."
        return _deliver(question, Status.DECLINED, text, blocks.notice_blocks(text))
    conversation = _thread_conversation(question, user)
    try:
        reply = chat_services.chat_reply(
            user=user,
            scope=scope,
            question=question.text,
            conversation=conversation,
            surface=_SURFACES[workspace.platform],
            channel=f"{workspace.external_id}/{question.channel_id or 'direct'}",
        )
    except EXPECTED_FAILURES as exc:
        text = answer_failure(exc).detail
        return _deliver(question, Status.FAILED, text, blocks.notice_blocks(text), error=text)
    if conversation is None and question.kind in {Kind.MENTION, Kind.DIRECT}:
        ThreadConversation.objects.get_or_create(
            workspace=workspace,
            channel_id=question.channel_id,
            thread_ts=question.thread_ts,
            user=user,
            defaults={"conversation_id": reply.conversation_id},
        )
    Question.objects.filter(pk=question.pk).update(message_id=reply.message_id)
    shareable = question.kind == Kind.COMMAND and question.channel_type != "im"
    source_url = f"{settings.PUBLIC_URL}/c/{reply.conversation_id}/"
    answer_blocks = blocks.answer_blocks(
        text=reply.answer,
        citations=reply.citations,
        message_id=reply.message_id,
        source_url=source_url,
        shareable=shareable,
    )
    if question.kind == Kind.WEBHOOK:  # the text is the whole reply: it carries the link
        fallback = blocks.plain_text(
            text=reply.answer, citations=reply.citations, source_url=source_url
        )
    else:
        fallback = blocks.fallback_text(text=reply.answer, citations=reply.citations)
    return _deliver(question, Status.ANSWERED, fallback, answer_blocks)


def _scope_for(question: Question, user: User) -> Scope | None:
    if question.kind in {Kind.COMMAND, Kind.DIRECT, Kind.WEBHOOK}:
        return user_scope(user=user)
    channel_roles = list(question.workspace.channel_roles.values_list("pk", flat=True))
    if not channel_roles:
        return None
    return channel_scope(user=user, channel_role_ids=channel_roles)


def _thread_conversation(question: Question, user: User):
    if question.kind not in {Kind.MENTION, Kind.DIRECT}:
        return None
    mapping = (
        ThreadConversation.objects.select_related("conversation")
        .filter(
            workspace=question.workspace,
            channel_id=question.channel_id,
            thread_ts=question.thread_ts,
            user=user,
        )
        .first()
    )
    return mapping.conversation if mapping else None


def _deliver(question: Question, status: str, text: str, reply_blocks: list, error="") -> Delivery:
    """Post the reply unless it was posted before: the replied flag is claimed first, so a
    redelivered task (the worker died after posting) never posts twice."""
    claimed = Question.objects.filter(pk=question.pk, replied_at__isnull=True).update(
        replied_at=timezone.now(), status=status, error=error[:255]
    )
    if not claimed:
        return Delivery(Question.objects.get(pk=question.pk).status)
    try:
        _post(question, status, text, reply_blocks)
    except (SlackClientError, client.ReplyFailed, httpx.HTTPError, httpx.InvalidURL) as exc:
        # Never retried (the flag is set): recorded, with Slack's error code, not the text.
        reason = getattr(getattr(exc, "response", None), "data", None) or {}
        reason = reason.get("error") if isinstance(reason, dict) else ""
        error = f"reply not delivered: {reason or type(exc).__name__}"
        Question.objects.filter(pk=question.pk).update(error=error[:255])
        logger.warning("question %s: %s", question.pk, error)
        return Delivery(status, text, delivered=False)
    logger.info("question %s: %s", question.pk, status)
    return Delivery(status, text)


def _post(question: Question, status: str, text: str, reply_blocks: list) -> None:
    if question.kind == Kind.WEBHOOK:
        webhook.respond(question, text=text)
    elif question.kind == Kind.COMMAND:
        client.respond(question.response_url, text=text, blocks=reply_blocks)
    elif question.kind == Kind.MENTION and status == Status.LINK_PROMPTED:
        # The link binds an account: only the asker may see it.
        client.post_ephemeral(
            channel=question.channel_id,
            user=question.external_user_id,
            text=text,
            blocks=reply_blocks,
        )
    else:
        client.post_message(
            channel=question.channel_id,
            text=text,
            blocks=reply_blocks,
            thread_ts=question.thread_ts,
        )


# --- Interactions (buttons on answers)


def feedback_from_button(
    *, workspace: Workspace, external_user_id: str, action_id: str, value: str
) -> Feedback:
    """A Helpful / Not helpful button: feedback by the linked user on their own answer
    (NotLinked, or Http404 for an answer that is not theirs)."""
    user = linked_user(workspace=workspace, external_user_id=external_user_id)
    if user is None:
        raise NotLinked(external_user_id)
    rating, _, message_id = value.partition(":")
    if rating not in Feedback.Rating.values or not message_id.isdigit():
        raise Http404("No answer with this id.")
    message = chat_selectors.access_message(user=user, message_id=int(message_id))
    feedback, _ = chat_services.feedback_set(user=user, message=message, rating=rating)
    return feedback


def answer_share(
    *,
    workspace_id: int,
    external_user_id: str,
    message_id: int,
    channel_id: str,
    response_url: str,
) -> bool:
    """Re-post the asker's own answer into the channel, only if every passage it was drawn
    from (shown to the model, cited or not) is one the channel's scope covers now."""
    workspace = Workspace.objects.get(pk=workspace_id)
    user = linked_user(workspace=workspace, external_user_id=external_user_id)
    if user is None:
        raise NotLinked(external_user_id)
    message = chat_selectors.access_message(user=user, message_id=message_id)
    channel_roles = list(workspace.channel_roles.values_list("pk", flat=True))
    scope = channel_scope(user=user, channel_role_ids=channel_roles)
    view = _message_view(user, message)
    drawn_on = set(_shown_chunk_ids(message)) | {c.chunk_id for c in view.citations}
    covered = visible_chunk_ids(scope=scope, chunk_ids=drawn_on)
    if view.redacted or not drawn_on <= covered or not all(c.available for c in view.citations):
        client.respond(response_url, text=NOT_SHAREABLE, blocks=blocks.notice_blocks(NOT_SHAREABLE))
        logger.info("share of answer %s refused: outside the channel scope", message.pk)
        return False
    shared_blocks = blocks.answer_blocks(
        text=view.text,
        citations=view.citations,
        message_id=None,
        source_url=f"{settings.PUBLIC_URL}/c/{message.conversation_id}/",
    )
    client.respond(
        response_url,
        text=blocks.fallback_text(text=view.text, citations=view.citations),
        blocks=shared_blocks,
        response_type="in_channel",
    )
    return True


def _message_view(user: User, message: Message):
    views = chat_selectors.conversation_messages_for_user(
        scope=user_scope(user=user), conversation=message.conversation
    )
    return next(v for v in views if v.id == message.pk)


def _shown_chunk_ids(message: Message) -> list[int]:
    audit = AnswerAudit.objects.filter(message=message).first()
    return list(audit.shown_chunk_ids) if audit else []
