"""The console's users and roles pages, beyond the permission matrix."""

import pytest
from django.test import Client

from accounts.models import AccessLogEntry, Role
from chatbot.models import Conversation
from knowledge.models import Document
from tests import factories

pytestmark = pytest.mark.django_db


def _console(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_deleting_a_documents_only_role_asks_where_its_documents_go():
    finance, archive = factories.role("finance"), factories.role("archive")
    budget = factories.indexed_document(title="Budget", text="# B\n\nFuel.", roles=[finance])
    client = _console(factories.superuser())
    url = f"/admin/accounts/role/{finance.pk}/delete/"

    page = client.get(url).content.decode()
    assert "only role of 1 document" in page and "Budget" in page

    refused = client.post(url, {"move_to": ""})
    assert refused.status_code == 200 and Role.objects.filter(pk=finance.pk).exists()
    assert not AccessLogEntry.objects.filter(action="role.deleted").exists()

    done = client.post(url, {"move_to": archive.pk})
    assert done.status_code == 302 and not Role.objects.filter(pk=finance.pk).exists()
    assert list(Document.objects.get(pk=budget.pk).roles.values_list("name", flat=True)) == [
        "archive"
    ]
    assert AccessLogEntry.objects.get(action="role.deleted").after == {"moved_to": "archive"}


def test_a_user_manager_sees_no_management_grants_and_cannot_change_staff():
    ugo = factories.grant(factories.user(username="ugo", is_staff=True), "manage_users")
    staff = factories.user(username="sam", is_staff=True)
    plain = factories.user(username="pat")
    client = _console(ugo)

    form = client.get(f"/admin/accounts/user/{plain.pk}/change/").content.decode()
    assert 'name="roles"' in form
    assert 'name="is_staff"' not in form and 'name="audits"' not in form

    staff_page = client.get(f"/admin/accounts/user/{staff.pk}/change/").content.decode()
    assert 'name="roles"' not in staff_page  # read-only for a user manager
    assert client.post(f"/admin/accounts/user/{staff.pk}/change/", {}).status_code == 403
    assert client.get(f"/admin/accounts/user/{plain.pk}/password/").status_code == 403


def test_the_users_list_shows_roles_managed_roles_and_last_question():
    finance = factories.role("finance")
    fiona = factories.user(username="fiona", roles=[finance], manages=[finance])
    Conversation.objects.create(owner=fiona, title="Budget?")
    page = _console(factories.superuser()).get("/admin/accounts/user/?q=fiona").content.decode()
    row = page[page.index("fiona") :]
    assert "finance" in row
    assert '<td class="field-managed_role_list">finance</td>' in row
    assert '<td class="field-last_question">—</td>' not in row


def test_the_roles_pages_name_documents_to_superusers_only():
    legal = factories.role("legal")
    factories.indexed_document(title="Litigation hold", text="# H\n\nCase.", roles=[legal])
    fiona = factories.user(username="fiona", is_staff=True, manages=[factories.role("finance")])
    ugo = factories.grant(factories.user(username="ugo", is_staff=True), "manage_users")
    page = f"/admin/accounts/role/{legal.pk}/change/"

    assert "Litigation hold" in _console(factories.superuser()).get(page).content.decode()
    assert _console(fiona).get(page).status_code == 403
    assert _console(fiona).get("/admin/accounts/role/").status_code == 403
    seen_by_ugo = _console(ugo).get(page)
    assert seen_by_ugo.status_code == 200 and "Litigation" not in seen_by_ugo.content.decode()
    listed = _console(ugo).get("/admin/accounts/role/").content.decode()
    assert "legal" in listed and "field-document_count" not in listed
