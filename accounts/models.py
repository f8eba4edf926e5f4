from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.Model):
    """The unit of access: users hold roles, documents are visible to roles.

    Holding a role (``users``) lets a user read what the role may see; managing it
    (``managers``) lets a user upload into it, re-scope and delete its documents. The two
    are separate grants.
    """

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)
    managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="managed_roles", blank=True
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    roles = models.ManyToManyField(Role, related_name="users", blank=True)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        permissions = [
            ("manage_users", "Can manage non-staff users and grant them roles"),
            ("audit_conversations", "Can read other users' conversations and answer audits"),
        ]


class AccessLogEntry(models.Model):
    """One change of access (or one audited read), with who, when, before and after.

    Written by the services in the same transaction as the change; never edited.
    """

    class Action(models.TextChoices):
        USER_CREATED = "user.created", "user created"
        USER_UPDATED = "user.updated", "user changed"
        USER_ROLES_CHANGED = "user.roles_changed", "user's roles changed"
        USER_ACTIVATED = "user.activated", "user activated"
        USER_DEACTIVATED = "user.deactivated", "user deactivated"
        USER_PASSWORD_SET = "user.password_set", "password set"
        USER_PRIVILEGES_CHANGED = "user.privileges_changed", "user's privileges changed"
        ROLE_CREATED = "role.created", "role created"
        ROLE_UPDATED = "role.updated", "role renamed or described"
        ROLE_DELETED = "role.deleted", "role deleted"
        ROLE_MANAGERS_CHANGED = "role.managers_changed", "role managers changed"
        DOCUMENT_UPLOADED = "document.uploaded", "document uploaded"
        DOCUMENT_RESCOPED = "document.rescoped", "document re-scoped"
        DOCUMENT_FILE_REPLACED = "document.file_replaced", "document file replaced"
        DOCUMENT_UPDATED = "document.updated", "document changed"
        DOCUMENT_REINGESTED = "document.reingested", "document re-ingested"
        DOCUMENT_DELETED = "document.deleted", "document deleted"
        CONVERSATION_READ = "audit.conversation_read", "conversation read (audit)"
        AUDIT_READ = "audit.answers_read", "answer audits read (audit)"
        SEARCH_AS_USER = "audit.search_as_user", "searched as user (audit)"
        WORKSPACE_CREATED = "integration.workspace_created", "chat workspace created"
        WORKSPACE_CHANGED = "integration.workspace_changed", "chat workspace changed"
        WORKSPACE_DELETED = "integration.workspace_deleted", "chat workspace deleted"
        IDENTITY_LINKED = "integration.identity_linked", "chat identity linked"
        IDENTITY_UNLINKED = "integration.identity_unlinked", "chat identity unlinked"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_username = models.CharField(max_length=150)
    action = models.CharField(max_length=40, choices=Action.choices, db_index=True)
    target_type = models.CharField(max_length=40)
    target_id = models.BigIntegerField(null=True)
    target_label = models.CharField(max_length=255, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)
        verbose_name = "access log entry"
        verbose_name_plural = "access log entries"
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.actor_username} {self.action} {self.target_label}"


class ApiToken(models.Model):
    """A bearer credential for the API. Only a SHA-256 of the key is stored (the key is 256
    random bits, so a fast hash is enough: nothing to brute-force); the key itself is shown
    once, when issued. A token expires, and stops working when its user's password changes
    (``password_fingerprint``) or the user is deactivated, even before it is deleted."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="the key's first characters, to tell it")
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    password_fingerprint = models.CharField(max_length=64)

    class Meta:
        ordering = ["-created_at", "-id"]
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"
