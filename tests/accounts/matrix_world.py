"""The actors and the small workspace the permission matrix runs against (API and console)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from accounts.models import AccessLogEntry, User
from chatbot.models import Conversation, Message
from knowledge.models import Document
from knowledge.services import document_create
from tests import factories

ACTORS = ["superuser", "user_manager", "finance_manager", "auditor", "plain", "staff_with_perms"]
ACTORS += ["inactive"]

NEW_PASSWORD = "a-New-pass-4242"
LEGAL_BYTES = b"# Litigation hold\n\nThe Harlow dispute is case HC-2024-0193.\n"


@dataclass
class World:
    roles: dict
    users: dict
    finance_doc: Document
    board_doc: Document
    legal_doc: Document
    conversation: Conversation


def _everything_but_management():
    """Every Django permission except the two grants of the management model."""
    from django.contrib.auth.models import Permission

    return Permission.objects.exclude(codename__in=["manage_users", "audit_conversations"])


def build_world() -> World:
    roles = {n: factories.role(n) for n in ("everyone", "finance", "board", "legal")}
    users = {
        "superuser": factories.superuser("root"),
        "user_manager": factories.grant(
            factories.user(username="ugo", is_staff=True, roles=[roles["everyone"]]),
            "manage_users",
        ),
        # Manages finance and board without holding either: managing is not reading.
        "finance_manager": factories.user(
            username="fiona",
            is_staff=True,
            roles=[roles["everyone"]],
            manages=[roles["finance"], roles["board"]],
        ),
        "auditor": factories.grant(
            factories.user(username="aud", is_staff=True, roles=[roles["everyone"]]),
            "audit_conversations",
        ),
        "plain": factories.user(username="eve", roles=[roles["everyone"], roles["finance"]]),
        "staff_with_perms": factories.user(
            username="max", is_staff=True, roles=[roles["everyone"], roles["finance"]]
        ),
        "inactive": factories.superuser("gone"),
        "other_admin": factories.superuser("root2"),
        "target": factories.user(username="tom", roles=[roles["everyone"]]),
    }
    users["staff_with_perms"].user_permissions.set(_everything_but_management())
    User.objects.filter(pk=users["inactive"].pk).update(is_active=False)
    finance_doc = factories.indexed_document(
        title="Budget memo",
        text="# Budget\n\nThe fuel budget is 61.4 million.",
        roles=[roles["finance"]],
    )
    # Only the finance memo needs chunks (re-scoping rewrites them; view-as searches them).
    board_doc = document_create(title="Board minutes", roles=[roles["board"]], status="ready")
    legal_doc = document_create(title="Litigation hold", roles=[roles["legal"]], status="ready")
    Document.objects.filter(pk=legal_doc.pk).update(
        content_hash=hashlib.sha256(LEGAL_BYTES).hexdigest(), original_filename="hold.md"
    )
    conversation = Conversation.objects.create(owner=users["target"], title="Fuel question")
    Message.objects.create(conversation=conversation, role="user", text="What is the fuel budget?")
    AccessLogEntry.objects.all().delete()
    return World(roles, users, finance_doc, board_doc, legal_doc, conversation)


def _roles_of(document) -> list[str]:
    return sorted(Document.objects.get(pk=document.pk).roles.values_list("name", flat=True))


def roles_of(document) -> list[str]:
    return sorted(Document.objects.get(pk=document.pk).roles.values_list("name", flat=True))
