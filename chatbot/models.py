from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField()
    # Assistant messages only: the audit trail of how the answer was made.
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    fallback_used = models.BooleanField(default=False)
    not_found = models.BooleanField(default=False)
    # Names of the asker's roles when the answer was made (the scope it was drawn from).
    scoped_roles = ArrayField(models.CharField(max_length=150), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"


class MessageCitation(models.Model):
    """A numbered source of an answer. The ids are kept when the chunk or document is deleted
    (the foreign keys go NULL), so the audit trail still names what was cited."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="citations")
    index = models.PositiveSmallIntegerField()
    chunk = models.ForeignKey(
        "knowledge.Chunk", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cited_chunk_id = models.BigIntegerField()
    document = models.ForeignKey(
        "knowledge.Document", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cited_document_id = models.BigIntegerField()
    title = models.CharField(max_length=255)
    snippet = models.TextField()
    score = models.FloatField(default=0.0)

    class Meta:
        ordering = ["message_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["message", "index"], name="uniq_citation_index")
        ]


class Feedback(models.Model):
    class Rating(models.TextChoices):
        UP = "up"
        DOWN = "down"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.CharField(max_length=8, choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="uniq_feedback_per_user")
        ]


class AnswerAudit(models.Model):
    """One row per question answered (or attempted). Written once, never edited: only the
    "view" permission exists and no interface offers changes."""

    class Surface(models.TextChoices):
        WEB = "web", "web chat or API"
        SLACK = "slack", "Slack"
        WEBHOOK = "webhook", "signed webhook"
        MATTERMOST = "mattermost", "Mattermost"

    class Outcome(models.TextChoices):
        ANSWERED = "answered"
        NOT_FOUND = "not_found"
        UNAVAILABLE = "unavailable"
        FAILED = "failed"
        CANCELLED = "cancelled"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)
    role_ids = ArrayField(models.IntegerField(), default=list)
    question = models.TextField()
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.OneToOneField(
        Message, null=True, on_delete=models.SET_NULL, related_name="audit"
    )
    # [{"chunk_id", "document_id", "content_hash", "score", "rank"}], best first.
    retrieved = models.JSONField(default=list)
    shown_chunk_ids = ArrayField(models.BigIntegerField(), default=list)
    model = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True)
    retrieval_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True)
    total_ms = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    fallback_used = models.BooleanField(default=False)
    # Where the question was asked and the answer shown: a platform channel is readable by
    # others (the scope then holds only the channel's roles).
    surface = models.CharField(max_length=16, choices=Surface.choices, default=Surface.WEB)
    channel = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.username}: {self.question[:60]}"
