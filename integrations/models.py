"""Chat platforms that ask on people's behalf (Slack, Mattermost slash commands, and signed
webhooks from Slack-style platforms): which workspaces, which of their people are which app
users, and every question received, kept once so that a retried delivery is answered once."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Workspace(models.Model):
    """A Slack workspace (team), a Mattermost slash command, or a generic signed webhook
    integration.

    ``channel_roles`` bound what may be answered where others can read the answer (a Slack
    channel): the asker's roles that are also channel roles. None (the default) means the
    bot answers in channels only by inviting a direct message.
    """

    class Platform(models.TextChoices):
        SLACK = "slack", "Slack"
        WEBHOOK = "webhook", "Signed webhook"
        MATTERMOST = "mattermost", "Mattermost"

    platform = models.CharField(max_length=16, choices=Platform.choices)
    # Slack: the team_id. Webhook and Mattermost: a name of the operator's choosing.
    external_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    channel_roles = models.ManyToManyField("accounts.Role", blank=True, related_name="+")
    auto_link_by_email = models.BooleanField(
        default=False,
        help_text="Link a Slack user to the app user with the same verified email address "
        "(needs the users:read.email scope).",
    )
    # Webhook: the shared HMAC key. Mattermost: the token Mattermost generated for the slash
    # command (pasted by the operator). Slack's signing secrets come from the environment.
    signing_secret = models.CharField(max_length=128, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "chat workspace"
        constraints = [
            models.UniqueConstraint(fields=["platform", "external_id"], name="uniq_workspace")
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.name or self.external_id}"


class LinkedIdentity(models.Model):
    """A person on a chat platform, as one app user: answers use that user's roles."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="identities")
    external_user_id = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_identities"
    )
    linked_by_email = models.BooleanField(default=False)
    linked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "linked identity"
        verbose_name_plural = "linked identities"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "external_user_id"], name="uniq_linked_identity"
            )
        ]

    def __str__(self) -> str:
        return f"{self.external_user_id} in {self.workspace} = {self.user}"


class LinkToken(models.Model):
    """A one-time, short-lived invitation to bind a platform user to whoever opens it while
    logged in. Only a SHA-256 of the key is stored."""

    key_hash = models.CharField(max_length=64, unique=True)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    external_user_id = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Question(models.Model):
    """One question received from a platform. Unique per delivery (the event id) and per
    message (channel and ts): Slack retries events, and a mention arrives both as an
    app_mention and as a message event."""

    class Kind(models.TextChoices):
        COMMAND = "command", "slash command"
        MENTION = "mention", "mention in a channel"
        DIRECT = "direct", "direct message"
        WEBHOOK = "webhook", "webhook"

    class Status(models.TextChoices):
        PENDING = "pending"
        ANSWERED = "answered"
        LINK_PROMPTED = "link_prompted", "asked to link"
        DECLINED = "declined", "declined (channel scope)"
        FAILED = "failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="questions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    external_user_id = models.CharField(max_length=64)
    channel_id = models.CharField(max_length=64, blank=True)
    channel_type = models.CharField(max_length=16, blank=True)
    event_id = models.CharField(max_length=64, blank=True)
    # Webhooks: a digest of the signed timestamp and signature, so a captured request
    # replayed within the signature's window is refused whatever id it claims.
    request_digest = models.CharField(max_length=64, blank=True)
    ts = models.CharField(max_length=32, blank=True)
    thread_ts = models.CharField(max_length=32, blank=True)
    text = models.TextField()
    response_url = models.URLField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=255, blank=True)
    message = models.ForeignKey(
        "chatbot.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set (once, atomically) by whoever posts the reply: a redelivered task never posts twice.
    replied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "question from a chat platform"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "event_id"],
                condition=~Q(event_id=""),
                name="uniq_question_event",
            ),
            models.UniqueConstraint(
                fields=["workspace", "request_digest"],
                condition=~Q(request_digest=""),
                name="uniq_question_request",
            ),
            models.UniqueConstraint(
                fields=["workspace", "channel_id", "ts"],
                condition=~Q(ts=""),
                name="uniq_question_message",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.external_user_id}"


class ThreadConversation(models.Model):
    """The app conversation behind one person's questions in one Slack thread, so follow-ups
    get that thread's earlier turns (re-checked against the current scope)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    channel_id = models.CharField(max_length=64)
    thread_ts = models.CharField(max_length=32)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        "chatbot.Conversation", on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "channel_id", "thread_ts", "user"], name="uniq_thread_user"
            )
        ]
