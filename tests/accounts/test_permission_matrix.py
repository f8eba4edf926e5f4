"""Who may manage what, tried as every kind of actor against the API.

A table of actors x actions: each action is attempted for real, and what it left behind
(a user created, a password changed, a document moved...) must match the table. A denied
action changes nothing and writes no access-log entry; an allowed one writes exactly one.
The console runs the same table in tests/test_console_matrix.py.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import AccessLogEntry, User
from knowledge.models import Document
from tests import factories
from tests.accounts.matrix_world import ACTORS, LEGAL_BYTES, NEW_PASSWORD, roles_of

pytestmark = pytest.mark.django_db


def _upload(client, name, data, roles):
    return client.post(
        "/api/v1/documents/",
        {"file": SimpleUploadedFile(name, data), "roles": roles},
        format="multipart",
    )


# Each action: (attempt(client, world) -> response, happened(world) -> bool, changes_access)

ACTIONS = {
    "create user": (
        lambda c, w: c.post(
            "/api/v1/users/", {"username": "newbie", "password": "a-Long-pass-42"}, format="json"
        ),
        lambda w: User.objects.filter(username="newbie").exists(),
        True,
    ),
    "create staff": (
        lambda c, w: c.post(
            "/api/v1/users/",
            {"username": "newstaff", "password": "a-Long-pass-42", "is_staff": True},
            format="json",
        ),
        lambda w: User.objects.filter(username="newstaff").exists(),
        True,
    ),
    "change a superuser's password": (
        lambda c, w: c.patch(
            f"/api/v1/users/{w.users['other_admin'].pk}/", {"password": NEW_PASSWORD}, format="json"
        ),
        lambda w: User.objects.get(username="root2").check_password(NEW_PASSWORD),
        True,
    ),
    "deactivate a superuser": (
        lambda c, w: c.patch(
            f"/api/v1/users/{w.users['other_admin'].pk}/", {"is_active": False}, format="json"
        ),
        lambda w: not User.objects.get(username="root2").is_active,
        True,
    ),
    "set a user's password": (
        lambda c, w: c.patch(
            f"/api/v1/users/{w.users['target'].pk}/", {"password": NEW_PASSWORD}, format="json"
        ),
        lambda w: User.objects.get(username="tom").check_password(NEW_PASSWORD),
        True,
    ),
    "grant a role": (
        lambda c, w: c.patch(
            f"/api/v1/users/{w.users['target'].pk}/",
            {"roles": ["everyone", "finance"]},
            format="json",
        ),
        lambda w: w.users["target"].roles.filter(name="finance").exists(),
        True,
    ),
    "appoint a role manager": (
        lambda c, w: c.patch(
            f"/api/v1/roles/{w.roles['legal'].pk}/", {"managers": ["tom"]}, format="json"
        ),
        lambda w: w.roles["legal"].managers.filter(username="tom").exists(),
        True,
    ),
    "upload into a managed role": (
        lambda c, w: _upload(c, "q4.md", b"# Q4\n\nRevenue rose.", "finance"),
        lambda w: Document.objects.filter(original_filename="q4.md").exists(),
        True,
    ),
    "upload into an unmanaged role": (
        lambda c, w: _upload(c, "plant.md", b"# Note\n\nWire the money to X.", "legal"),
        lambda w: Document.objects.filter(original_filename="plant.md").exists(),
        True,
    ),
    "upload another role's bytes (dedupe)": (
        lambda c, w: _upload(c, "copy.md", LEGAL_BYTES, "legal"),
        None,  # allowed: 200 with the existing document; refused: nothing about it
        False,
    ),
    "re-scope between managed roles": (
        lambda c, w: c.patch(
            f"/api/v1/documents/{w.finance_doc.pk}/", {"roles": ["finance", "board"]}, format="json"
        ),
        lambda w: roles_of(w.finance_doc) == ["board", "finance"]
        and factories.stored_chunks(
            document=w.finance_doc, allowed_roles__contains=[w.roles["board"].pk]
        )
        != [],
        True,
    ),
    "re-scope into an unmanaged role": (
        lambda c, w: c.patch(
            f"/api/v1/documents/{w.finance_doc.pk}/", {"roles": ["legal"]}, format="json"
        ),
        lambda w: roles_of(w.finance_doc) == ["legal"],
        True,
    ),
    "re-scope another role's document": (
        lambda c, w: c.patch(
            f"/api/v1/documents/{w.legal_doc.pk}/", {"roles": ["finance"]}, format="json"
        ),
        lambda w: roles_of(w.legal_doc) == ["finance"],
        True,
    ),
    "replace the file": (
        lambda c, w: c.patch(
            f"/api/v1/documents/{w.finance_doc.pk}/",
            {"file": SimpleUploadedFile("v2.md", b"# Budget v2\n\nFuel: 70 million.")},
            format="multipart",
        ),
        lambda w: Document.objects.get(pk=w.finance_doc.pk).original_filename == "v2.md",
        True,
    ),
    "delete": (
        lambda c, w: c.delete(f"/api/v1/documents/{w.finance_doc.pk}/"),
        lambda w: not Document.objects.filter(pk=w.finance_doc.pk).exists(),
        True,
    ),
    "delete another role's document": (
        lambda c, w: c.delete(f"/api/v1/documents/{w.legal_doc.pk}/"),
        lambda w: not Document.objects.filter(pk=w.legal_doc.pk).exists(),
        True,
    ),
    "read a document's management view": (
        lambda c, w: c.get(f"/api/v1/documents/{w.board_doc.pk}/"),
        None,  # what the response shows is the effect
        False,
    ),
    "read another role's document through PATCH {}": (
        lambda c, w: c.patch(f"/api/v1/documents/{w.legal_doc.pk}/", {}, format="json"),
        None,
        False,
    ),
    "read others' conversations": (
        lambda c, w: c.get(f"/api/v1/audit/conversations/{w.conversation.pk}/"),
        None,
        False,
    ),
    "view as user": (
        lambda c, w: c.post(
            "/api/v1/audit/search/", {"username": "eve", "query": "fuel budget"}, format="json"
        ),
        None,
        False,
    ),
}

Y, N = True, False
# Columns follow ACTORS: superuser, user manager, finance manager, auditor, plain,
# staff with every Django permission, inactive superuser.
MATRIX = {
    "create user":                                   [Y, Y, N, N, N, N, N],
    "create staff":                                  [Y, N, N, N, N, N, N],
    "change a superuser's password":                 [Y, N, N, N, N, N, N],
    "deactivate a superuser":                        [Y, N, N, N, N, N, N],
    "set a user's password":                         [Y, N, N, N, N, N, N],
    "grant a role":                                  [Y, Y, N, N, N, N, N],
    "appoint a role manager":                        [Y, N, N, N, N, N, N],
    "upload into a managed role":                    [Y, N, Y, N, N, N, N],
    "upload into an unmanaged role":                 [Y, N, N, N, N, N, N],
    "upload another role's bytes (dedupe)":          [Y, N, N, N, N, N, N],
    "re-scope between managed roles":                [Y, N, Y, N, N, N, N],
    "re-scope into an unmanaged role":               [Y, N, N, N, N, N, N],
    "re-scope another role's document":              [Y, N, N, N, N, N, N],
    "replace the file":                              [Y, N, Y, N, N, N, N],
    "delete":                                        [Y, N, Y, N, N, N, N],
    "delete another role's document":                [Y, N, N, N, N, N, N],
    "read a document's management view":             [Y, N, Y, N, N, N, N],
    "read another role's document through PATCH {}": [Y, N, N, N, N, N, N],
    "read others' conversations":                    [Y, N, N, Y, N, N, N],
    "view as user":                                  [Y, N, N, Y, N, N, N],
}  # fmt: skip

CASES = [
    pytest.param(actor, action, MATRIX[action][i], id=f"{actor}-{action}")
    for action in MATRIX
    for i, actor in enumerate(ACTORS)
]


def test_the_matrix_covers_every_action():
    assert set(MATRIX) == set(ACTIONS)
    assert all(len(row) == len(ACTORS) for row in MATRIX.values())


@pytest.mark.parametrize("actor,action,allowed", CASES)
def test_api(world, actor, action, allowed):
    attempt, happened, changes_access = ACTIONS[action]
    client = factories.api_client(world.users[actor])

    response = attempt(client, world)

    if allowed:
        assert response.status_code < 300, response.content
    else:
        assert response.status_code in (401, 403, 404), response.content
        body = response.content.decode()
        # A refusal names no document the actor could not see.
        assert "Litigation" not in body and "Board minutes" not in body
    if happened is not None:
        assert happened(world) is allowed
    else:
        shown = response.content.decode()
        assert (response.status_code == 200) is allowed
        if allowed:
            assert any(s in shown for s in ("Board minutes", "Litigation", "Fuel", "fuel"))
    if changes_access:
        logged = AccessLogEntry.objects.filter(actor_username=world.users[actor].username)
        assert logged.count() == (1 if allowed else 0), list(logged.values("action"))
