"""The permission matrix again, through the admin console (Django's test client): the same
actors, the same actions, the same expected answers as the API (test_permission_matrix)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import AccessLogEntry, User
from knowledge.models import Document
from tests import factories
from tests.accounts.matrix_world import ACTORS, LEGAL_BYTES, NEW_PASSWORD, roles_of
from tests.accounts.test_permission_matrix import MATRIX

pytestmark = pytest.mark.django_db

ADMIN = "/admin"


def _user_form(w, user, **changes):
    data = {
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "roles": [r.pk for r in user.roles.all()],
    }
    if user.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def _document_form(document, **changes):
    return {
        "title": document.title,
        "roles": [r.pk for r in document.roles.all()],
        **changes,
    }


def _upload(c, name, data, role):
    return c.post(
        f"{ADMIN}/knowledge/document/add/",
        {"files": [SimpleUploadedFile(name, data)], "roles": [role.pk]},
        follow=True,
    )


ACTIONS = {
    "create user": (
        lambda c, w: c.post(
            f"{ADMIN}/accounts/user/add/",
            {"username": "newbie", "password1": "a-Long-pass-42", "password2": "a-Long-pass-42"},
        ),
        lambda w: User.objects.filter(username="newbie").exists(),
    ),
    "create staff": (
        lambda c, w: c.post(
            f"{ADMIN}/accounts/user/{w.users['target'].pk}/change/",
            _user_form(w, w.users["target"], is_staff="on"),
        ),
        lambda w: User.objects.get(username="tom").is_staff,
    ),
    "change a superuser's password": (
        lambda c, w: c.post(
            f"{ADMIN}/accounts/user/{w.users['other_admin'].pk}/password/",
            {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        ),
        lambda w: User.objects.get(username="root2").check_password(NEW_PASSWORD),
    ),
    "deactivate a superuser": (
        lambda c, w: c.post(
            f"{ADMIN}/accounts/user/{w.users['other_admin'].pk}/change/",
            _user_form(w, w.users["other_admin"], is_active=None, is_staff="on", is_superuser="on"),
        ),
        lambda w: not User.objects.get(username="root2").is_active,
    ),
    "set a user's password": (
        lambda c, w: c.post(
            f"{ADMIN}/accounts/user/{w.users['target'].pk}/password/",
            {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        ),
        lambda w: User.objects.get(username="tom").check_password(NEW_PASSWORD),
    ),
    "grant a role": (
        lambda c, w: c.post(
            f"{ADMIN}/accounts/user/",
            {
                "action": "grant_role",
                "_selected_action": [w.users["target"].pk],
                "role": w.roles["finance"].pk,
                "apply": "Grant role",
            },
        ),
        lambda w: w.users["target"].roles.filter(name="finance").exists(),
    ),
    "appoint a role manager": (
        lambda c, w: c.post(
            f"{ADMIN}/accounts/role/{w.roles['legal'].pk}/change/",
            {"name": "legal", "description": "", "managers": [w.users["target"].pk]},
        ),
        lambda w: w.roles["legal"].managers.filter(username="tom").exists(),
    ),
    "upload into a managed role": (
        lambda c, w: _upload(c, "q4.md", b"# Q4\n\nRevenue rose.", w.roles["finance"]),
        lambda w: Document.objects.filter(original_filename="q4.md").exists(),
    ),
    "upload into an unmanaged role": (
        lambda c, w: _upload(c, "plant.md", b"# Note\n\nWire the money.", w.roles["legal"]),
        lambda w: Document.objects.filter(original_filename="plant.md").exists(),
    ),
    "upload another role's bytes (dedupe)": (
        lambda c, w: _upload(c, "copy.md", LEGAL_BYTES, w.roles["legal"]),
        None,
    ),
    "re-scope between managed roles": (
        lambda c, w: c.post(
            f"{ADMIN}/knowledge/document/{w.finance_doc.pk}/change/",
            _document_form(w.finance_doc, roles=[w.roles["finance"].pk, w.roles["board"].pk]),
        ),
        lambda w: roles_of(w.finance_doc) == ["board", "finance"]
        and factories.stored_chunks(
            document=w.finance_doc, allowed_roles__contains=[w.roles["board"].pk]
        )
        != [],
    ),
    "re-scope into an unmanaged role": (
        lambda c, w: c.post(
            f"{ADMIN}/knowledge/document/{w.finance_doc.pk}/change/",
            _document_form(w.finance_doc, roles=[w.roles["legal"].pk]),
        ),
        lambda w: roles_of(w.finance_doc) == ["legal"],
    ),
    "re-scope another role's document": (
        lambda c, w: c.post(
            f"{ADMIN}/knowledge/document/{w.legal_doc.pk}/change/",
            _document_form(w.legal_doc, roles=[w.roles["finance"].pk]),
        ),
        lambda w: roles_of(w.legal_doc) == ["finance"],
    ),
    "replace the file": (
        lambda c, w: c.post(
            f"{ADMIN}/knowledge/document/{w.finance_doc.pk}/change/",
            _document_form(
                w.finance_doc,
                replace_file=SimpleUploadedFile("v2.md", b"# Budget v2\n\nFuel: 70 million."),
            ),
        ),
        lambda w: Document.objects.get(pk=w.finance_doc.pk).original_filename == "v2.md",
    ),
    "delete": (
        lambda c, w: c.post(
            f"{ADMIN}/knowledge/document/{w.finance_doc.pk}/delete/", {"post": "yes"}
        ),
        lambda w: not Document.objects.filter(pk=w.finance_doc.pk).exists(),
    ),
    "delete another role's document": (
        lambda c, w: c.post(
            f"{ADMIN}/knowledge/document/{w.legal_doc.pk}/delete/", {"post": "yes"}
        ),
        lambda w: not Document.objects.filter(pk=w.legal_doc.pk).exists(),
    ),
    "read a document's management view": (
        lambda c, w: c.get(f"{ADMIN}/knowledge/document/{w.board_doc.pk}/change/"),
        None,
    ),
    "read another role's document through PATCH {}": (
        lambda c, w: c.get(f"{ADMIN}/knowledge/document/{w.legal_doc.pk}/change/"),
        None,
    ),
    "read others' conversations": (
        lambda c, w: c.get(f"{ADMIN}/chatbot/conversation/{w.conversation.pk}/change/"),
        None,
    ),
    "view as user": (
        lambda c, w: c.post(
            f"{ADMIN}/view-as/", {"username": "eve", "query": "fuel budget", "k": 10}
        ),
        None,
    ),
}

# What an allowed read shows (and a refused one must not).
SHOWN = {
    "upload another role's bytes (dedupe)": "Litigation hold",
    "read a document's management view": "Board minutes",
    "read another role's document through PATCH {}": "Litigation hold",
    "read others' conversations": "Fuel question",
    "view as user": "Budget memo",
}

CASES = [
    pytest.param(actor, action, MATRIX[action][i], id=f"{actor}-{action}")
    for action in MATRIX
    for i, actor in enumerate(ACTORS)
]


def test_the_console_runs_every_row_of_the_matrix():
    assert set(ACTIONS) == set(MATRIX)
    assert {a for a, (_, happened) in ACTIONS.items() if happened is None} == set(SHOWN)


@pytest.mark.parametrize("actor,action,allowed", CASES)
def test_console(world, actor, action, allowed):
    attempt, happened = ACTIONS[action]
    client = Client()
    client.force_login(world.users[actor])
    before = AccessLogEntry.objects.exclude(action__startswith="audit.").count()

    response = attempt(client, world)

    assert response.status_code < 500
    if happened is not None:
        assert happened(world) is allowed
        changes = AccessLogEntry.objects.exclude(action__startswith="audit.").count() - before
        assert changes == (1 if allowed else 0)
    else:
        shown = response.status_code == 200 and SHOWN[action] in response.content.decode()
        assert shown is allowed
