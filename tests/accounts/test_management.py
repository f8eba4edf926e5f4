"""The management model's rules beyond the matrix: what each change logs, tokens revoked,
roles deleted without orphaning documents, uploaders following their uploads."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import policy, services
from accounts.models import AccessLogEntry, ApiToken, User
from accounts.policy import actor_for, operator
from accounts.selectors import user_scope
from knowledge import services as knowledge_services
from knowledge.models import Document
from knowledge.retrieval import chunk_search
from knowledge.selectors import documents_unreachable
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return factories.superuser("root")


def _entries():
    return list(AccessLogEntry.objects.order_by("id").values("action", "before", "after"))


def test_each_change_of_access_logs_one_entry_with_before_and_after(admin):
    actor = actor_for(user=admin)
    finance, legal = factories.role("finance"), factories.role("legal")
    tom = factories.user(username="tom", roles=[finance])
    document = factories.indexed_document(title="Memo", text="# Memo\n\nText.", roles=[finance])
    AccessLogEntry.objects.all().delete()

    steps = [
        (
            lambda: services.user_update(actor=actor, user=tom, role_names=["legal"]),
            "user.roles_changed",
            {"roles": ["finance"]},
            {"roles": ["legal"]},
        ),
        (
            lambda: services.user_update(actor=actor, user=tom, is_active=False),
            "user.deactivated",
            {"is_active": True},
            {"is_active": False},
        ),
        (
            lambda: services.user_update(actor=actor, user=tom, password="x-Pass-word-77"),
            "user.password_set",
            {"password": "…"},
            {"password": "set"},
        ),
        (
            lambda: services.role_set_managers(actor=actor, role=legal, managers=[tom]),
            "role.managers_changed",
            {"managers": []},
            {"managers": ["tom"]},
        ),
        (
            lambda: services.user_set_grants(actor=actor, user=tom, audits=True),
            "user.privileges_changed",
            {"manages_users": False, "audits": False},
            {"manages_users": False, "audits": True},
        ),
        (
            lambda: knowledge_services.document_update(
                actor=actor, document=document, roles=[finance, legal]
            ),
            "document.rescoped",
            {"roles": ["finance"]},
            {"roles": ["finance", "legal"]},
        ),
        (
            lambda: services.role_update(actor=actor, role=legal, name="legal-dept"),
            "role.updated",
            {"name": "legal", "description": ""},
            {"name": "legal-dept", "description": ""},
        ),
    ]
    for number, (change, action, before, after) in enumerate(steps, start=1):
        change()
        entries = _entries()
        assert len(entries) == number, action
        assert entries[-1] == {"action": action, "before": before, "after": after}
        assert AccessLogEntry.objects.order_by("id").last().actor_username == "root"

    # No change, no entry: the same roles again, and a rename that renames nothing.
    services.user_update(actor=actor, user=tom, role_names=["legal-dept"])
    knowledge_services.document_update(actor=actor, document=document, roles=[finance, legal])
    assert len(_entries()) == len(steps)


def test_a_refused_change_logs_nothing_and_changes_nothing():
    finance = factories.role("finance")
    ugo = factories.grant(factories.user(username="ugo", is_staff=True), "manage_users")
    boss = factories.superuser("boss")
    with pytest.raises(policy.ManagementDenied):
        services.user_update(actor=actor_for(user=ugo), user=boss, role_names=["finance"])
    assert not boss.roles.exists() and not AccessLogEntry.objects.exists()
    assert finance.users.count() == 0


def test_a_new_password_or_a_deactivation_revokes_api_tokens(admin):
    client_admin = factories.api_client(admin)
    tom = factories.user(username="tom")
    tom_client = factories.api_client(tom)
    assert tom_client.get("/api/v1/me/").status_code == 200

    response = client_admin.patch(
        f"/api/v1/users/{tom.pk}/", {"password": "a-New-pass-4242"}, format="json"
    )

    assert response.status_code == 200
    assert tom_client.get("/api/v1/me/").status_code == 401
    assert not ApiToken.objects.filter(user=tom).exists()

    tom_client = factories.api_client(tom)  # a fresh token, then deactivation
    client_admin.patch(f"/api/v1/users/{tom.pk}/", {"is_active": False}, format="json")
    assert tom_client.get("/api/v1/me/").status_code == 401


def test_deleting_a_documents_only_role_is_refused_with_the_documents_named(admin):
    finance, archive = factories.role("finance"), factories.role("archive")
    only = factories.indexed_document(title="Budget", text="# B\n\nFuel budget.", roles=[finance])
    client = factories.api_client(admin)
    reader = factories.user(roles=[archive])

    refused = client.delete(f"/api/v1/roles/{finance.pk}/")

    assert refused.status_code == 409
    assert "Budget" in refused.json()["detail"] and "move_to" in refused.json()["detail"]
    assert finance.__class__.objects.filter(pk=finance.pk).exists()

    moved = client.delete(f"/api/v1/roles/{finance.pk}/?move_to=archive")

    assert moved.status_code == 204
    assert list(Document.objects.get(pk=only.pk).roles.values_list("name", flat=True)) == [
        "archive"
    ]
    scoped = [factories.chunk_roles(c) for c in factories.stored_chunks(document=only)]
    assert scoped and all(roles == [archive.pk] for roles in scoped)
    assert [h.document_id for h in chunk_search(scope=user_scope(user=reader), query="fuel")] == [
        only.pk
    ]
    entry = AccessLogEntry.objects.get(action="role.deleted")
    assert entry.before["documents"] == [only.pk] and entry.after == {"moved_to": "archive"}


def test_deleting_a_role_its_documents_share_needs_no_move(admin):
    finance, legal = factories.role("finance"), factories.role("legal")
    factories.indexed_document(title="Shared", text="# S\n\nText.", roles=[finance, legal])
    assert factories.api_client(admin).delete(f"/api/v1/roles/{finance.pk}/").status_code == 204


def test_the_uploader_follows_its_upload_without_holding_its_role(admin):
    factories.role("finance")
    client = factories.api_client(admin)  # holds no role at all
    created = client.post(
        "/api/v1/documents/",
        {"file": SimpleUploadedFile("memo.md", b"# Memo\n\nText."), "roles": "finance"},
        format="multipart",
    )
    assert created.status_code == 202
    detail = client.get(f"/api/v1/documents/{created.json()['id']}/")
    assert detail.status_code == 200 and detail.json()["status"] == "queued"
    # It is not in what the admin can read, only in what it manages.
    assert client.get("/api/v1/documents/").json()["count"] == 0
    managed = client.get("/api/v1/documents/?managed=true").json()
    assert [d["id"] for d in managed["results"]] == [created.json()["id"]]


def test_a_curator_lists_only_what_it_manages():
    finance, legal = factories.role("finance"), factories.role("legal")
    mine = factories.indexed_document(title="Budget", text="# B\n\nText.", roles=[finance])
    factories.indexed_document(title="Hold", text="# H\n\nText.", roles=[legal])
    fiona = factories.user(manages=[finance])
    listed = factories.api_client(fiona).get("/api/v1/documents/?managed=true").json()
    assert [d["title"] for d in listed["results"]] == [mine.title]


def test_unreachable_documents_are_those_no_active_user_can_retrieve():
    finance, legal, empty = factories.role("finance"), factories.role("legal"), factories.role("x")
    factories.user(roles=[finance])
    gone = factories.user(roles=[legal])
    gone.is_active = False
    gone.save()
    reachable = factories.indexed_document(title="R", text="# R\n\nText.", roles=[finance, empty])
    lost = factories.indexed_document(title="L", text="# L\n\nText.", roles=[legal])
    nobody = factories.indexed_document(title="N", text="# N\n\nText.", roles=[empty])
    ids = set(documents_unreachable().values_list("pk", flat=True))
    assert ids == {lost.pk, nobody.pk} and reachable.pk not in ids


def test_only_a_superuser_hands_out_the_management_grants():
    ugo = factories.grant(factories.user(username="ugo", is_staff=True), "manage_users")
    tom = factories.user(username="tom")
    with pytest.raises(policy.ManagementDenied):
        services.user_set_grants(actor=actor_for(user=ugo), user=tom, manages_users=True)
    services.user_set_grants(actor=operator(label="test"), user=tom, audits=True)
    assert actor_for(user=tom).audits


def test_grants_come_from_the_user_not_from_groups():
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.create(name="helpdesk")
    group.permissions.add(
        *Permission.objects.filter(codename__in=["manage_users", "audit_conversations"])
    )
    staff = factories.user(is_staff=True)
    staff.groups.add(group)
    actor = actor_for(user=staff)
    assert not actor.manages_users and not actor.audits and not actor.is_anyone


@pytest.mark.parametrize("change", [{"is_superuser": True}, {"is_staff": True}])
def test_only_a_superuser_raises_a_user_to_staff_or_superuser(change):
    ugo = factories.grant(factories.user(username="ugo", is_staff=True), "manage_users")
    pat = factories.user(username="pat")
    with pytest.raises(policy.ManagementDenied):
        services.user_update(actor=actor_for(user=ugo), user=pat, **change)
    pat.refresh_from_db()
    assert not (pat.is_staff or pat.is_superuser) and not AccessLogEntry.objects.exists()

    services.user_update(actor=actor_for(user=factories.superuser()), user=pat, **change)
    pat.refresh_from_db()
    assert getattr(pat, next(iter(change)))
    assert AccessLogEntry.objects.get().action == "user.privileges_changed"


def test_the_list_of_manageable_users_is_exactly_who_can_manage_user_allows():
    manager = factories.grant(factories.user(is_staff=True), "manage_users")
    actors = [
        factories.superuser(),
        manager,
        factories.user(is_staff=True),  # staff without the grant
        factories.user(),
        factories.user(manages=[factories.role()]),  # a role manager
    ]
    for account in actors:
        actor = policy.actor_for(user=account)
        expected = {u.pk for u in User.objects.all() if policy.can_manage_user(actor, u)}
        assert set(policy.manageable_users(actor).values_list("pk", flat=True)) == expected
