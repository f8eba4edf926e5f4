"""The console's document pages and "view as user", driven through the admin like a user.

Each permission comes from accounts.policy: Django's model permissions grant nothing, role
managers act only within their roles, and every change goes through the services (checked,
logged once).
"""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.models import AccessLogEntry
from accounts.selectors import user_scope
from knowledge import services
from knowledge.models import Document
from knowledge.retrieval import chunk_search
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:knowledge_document_changelist"
ADD = "admin:knowledge_document_add"
VIEW_AS = "admin:view-as"


def _change_url(document):
    return reverse("admin:knowledge_document_change", args=[document.pk])


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _plain_document(title, roles, **fields):
    """A document row without chunks (the list and the actions need no text)."""
    return services.document_create(title=title, roles=list(roles), **fields)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def _section(html: str, start: str, end: str | None = None) -> str:
    body = html[html.index(start) :]
    return body[: body.index(end)] if end and end in body else body


@pytest.fixture
def finance():
    return factories.role("finance")


@pytest.fixture
def hr():
    return factories.role("hr")


@pytest.fixture
def manager(finance):
    return factories.user(username="fiona", is_staff=True, manages=[finance])


# The list


def test_a_role_manager_lists_the_documents_of_their_roles_and_their_own_uploads(
    finance, hr, manager
):
    _plain_document("Finance budget", [finance])
    _plain_document("Shared handbook", [finance, hr])
    _plain_document("My HR upload", [hr], uploaded_by=manager)
    _plain_document("Salary bands", [hr])

    response = _client(manager).get(reverse(CHANGELIST))

    assert response.status_code == 200
    listed = {d.title for d in response.context["cl"].result_list}
    assert listed == {"Finance budget", "Shared handbook", "My HR upload"}
    assert "Salary bands" not in response.content.decode()


def test_the_role_filter_offers_only_roles_the_manager_can_see(finance, hr, manager):
    factories.role("legal")
    _plain_document("Finance budget", [finance])
    _plain_document("Salary bands", [hr])

    response = _client(manager).get(reverse(CHANGELIST))

    role_filter = next(f for f in response.context["cl"].filter_specs if f.title == "role")
    assert [name for _, name in role_filter.lookup_choices] == ["finance"]


def test_the_unreachable_filter_lists_documents_no_active_user_can_retrieve(finance, hr):
    factories.user(roles=[finance])
    former = factories.user(roles=[hr])
    former.is_active = False
    former.save()
    _plain_document("Read by finance", [finance])
    _plain_document("Only inactive readers", [hr])
    _plain_document("Nobody at all", [factories.role("empty")])

    response = _client(factories.superuser()).get(reverse(CHANGELIST), {"reach": "unreachable"})

    listed = {d.title for d in response.context["cl"].result_list}
    assert listed == {"Only inactive readers", "Nobody at all"}


def test_the_list_shows_progress_and_the_reason_of_a_failure(finance, manager):
    _plain_document(
        "Big manual", [finance], status="processing", progress_done=12, progress_total=40
    )
    _plain_document("Broken scan", [finance], status="failed", error="The PDF has no text layer.")

    html = _client(manager).get(reverse(CHANGELIST)).content.decode()

    assert "processing 12/40" in html
    assert "failed: The PDF has no text layer." in html


def test_django_model_permissions_without_a_managed_role_grant_nothing(finance):
    clerk = factories.grant(
        factories.user(is_staff=True, roles=[finance]),
        "add_document",
        "change_document",
        "delete_document",
        "view_document",
    )
    document = _plain_document("Finance budget", [finance])
    client = _client(clerk)

    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(reverse(ADD)).status_code == 403
    refused = client.post(
        reverse(ADD),
        {"files": [SimpleUploadedFile("memo.md", b"# Memo\n\nHello.")], "roles": [finance.pk]},
    )
    assert refused.status_code == 403
    assert client.get(_change_url(document)).status_code == 403
    assert Document.objects.count() == 1
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse(CHANGELIST) not in index


# Upload


def test_several_files_upload_at_once_as_queued_documents_with_the_chosen_roles(
    finance, manager, django_capture_on_commit_callbacks
):
    files = [
        SimpleUploadedFile("travel-policy.md", b"# Travel\n\nBook economy class."),
        SimpleUploadedFile("expenses.txt", b"Receipts are due within 30 days."),
    ]
    with django_capture_on_commit_callbacks() as enqueued:
        response = _client(manager).post(
            reverse(ADD), {"files": files, "title": "", "roles": [finance.pk]}, follow=True
        )

    assert response.redirect_chain[-1][0] == reverse(CHANGELIST)
    documents = Document.objects.order_by("title")
    assert [(d.title, d.status) for d in documents] == [
        ("Expenses", "queued"),
        ("Travel policy", "queued"),
    ]
    for document in documents:
        assert [r.name for r in document.roles.all()] == ["finance"]
        assert document.uploaded_by == manager
    assert len(enqueued) == 2  # one ingestion per new document, once the upload commits
    assert sum("queued for ingestion" in m for m in _messages(response)) == 2
    assert AccessLogEntry.objects.filter(action="document.uploaded").count() == 2


def test_each_file_is_reported_queued_already_present_or_rejected(finance, manager):
    client = _client(manager)
    client.post(
        reverse(ADD),
        {"files": [SimpleUploadedFile("memo.md", b"# Memo\n\nHello.")], "roles": [finance.pk]},
    )

    response = client.post(
        reverse(ADD),
        {
            "files": [
                SimpleUploadedFile("memo.md", b"# Memo\n\nHello."),
                SimpleUploadedFile("tool.exe", b"MZ\x90\x00"),
                SimpleUploadedFile("empty.md", b""),
                SimpleUploadedFile("notes.md", b"# Notes\n\nNew."),
            ],
            "title": "Ignored for several files",
            "roles": [finance.pk],
        },
        follow=True,
    )

    messages = _messages(response)
    assert any(m.startswith("“memo.md” is already present") for m in messages)
    assert any(m.startswith("“tool.exe” was rejected:") for m in messages)
    assert any(m.startswith("“empty.md” was rejected: The file is empty.") for m in messages)
    assert any(m.startswith("“notes.md” is queued") for m in messages)
    assert sorted(Document.objects.values_list("original_filename", flat=True)) == [
        "memo.md",
        "notes.md",
    ]
    assert not Document.objects.filter(title="Ignored for several files").exists()


def test_a_single_file_takes_the_title(finance, manager):
    _client(manager).post(
        reverse(ADD),
        {
            "files": [SimpleUploadedFile("q3.md", b"# Q3\n\nRevenue.")],
            "title": "Q3 results",
            "roles": [finance.pk],
        },
    )
    assert list(Document.objects.values_list("title", flat=True)) == ["Q3 results"]


def test_an_upload_into_a_role_the_manager_does_not_manage_stores_nothing(finance, hr, manager):
    for roles in ([hr.pk], [finance.pk, hr.pk]):
        response = _client(manager).post(
            reverse(ADD),
            {"files": [SimpleUploadedFile("salaries.md", b"# Pay\n\nSecret.")], "roles": roles},
        )
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["roles"]
    assert Document.objects.count() == 0
    assert AccessLogEntry.objects.count() == 0


def test_the_upload_form_offers_only_managed_roles(finance, hr, manager):
    response = _client(manager).get(reverse(ADD))
    form = response.context["adminform"].form
    assert [r.name for r in form.fields["roles"].queryset] == ["finance"]


# Change


def _change_form(document, **overrides):
    data = {"title": document.title, "roles": [r.pk for r in document.roles.all()]}
    data.update(overrides)
    return data


def test_changing_roles_rescopes_the_chunks_at_once_and_logs_once(finance, hr):
    admin_user = factories.superuser()
    document = factories.indexed_document(
        title="Q3 report", text="# Results\n\nQ3 revenue was 4.2 million euros.", roles=[finance]
    )
    finance_reader, hr_reader = factories.user(roles=[finance]), factories.user(roles=[hr])
    assert chunk_search(scope=user_scope(user=finance_reader), query="revenue", k=5)

    response = _client(admin_user).post(
        _change_url(document), _change_form(document, roles=[hr.pk])
    )

    assert response.status_code == 302
    allowed = [factories.chunk_roles(c) for c in factories.stored_chunks(document=document)]
    assert allowed and {tuple(a) for a in allowed} == {(hr.pk,)}
    entries = AccessLogEntry.objects.filter(target_type="document", target_id=document.pk)
    assert [(e.action, e.before, e.after) for e in entries] == [
        ("document.rescoped", {"roles": ["finance"]}, {"roles": ["hr"]})
    ]
    assert chunk_search(scope=user_scope(user=finance_reader), query="revenue", k=5) == []
    assert chunk_search(scope=user_scope(user=hr_reader), query="revenue", k=5)


def test_a_manager_cannot_rescope_into_a_role_they_do_not_manage(finance, hr, manager):
    document = _plain_document("Finance budget", [finance])

    response = _client(manager).post(_change_url(document), _change_form(document, roles=[hr.pk]))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["roles"]
    assert [r.name for r in document.roles.all()] == ["finance"]
    assert AccessLogEntry.objects.count() == 0


def test_a_document_with_an_unmanaged_role_is_view_only(finance, hr, manager):
    document = _plain_document("Shared handbook", [finance, hr])
    client = _client(manager)

    page = client.get(_change_url(document))
    assert page.status_code == 200
    assert page.context["title"] == "View document"
    refused = client.post(_change_url(document), _change_form(document, roles=[finance.pk]))
    assert refused.status_code == 403
    assert sorted(r.name for r in document.roles.all()) == ["finance", "hr"]
    assert AccessLogEntry.objects.count() == 0


def test_a_rejected_replacement_file_changes_nothing(finance, manager):
    document = _plain_document("Finance budget", [finance])

    response = _client(manager).post(
        _change_url(document),
        _change_form(
            document, title="Renamed", replace_file=SimpleUploadedFile("tool.exe", b"MZ\x90")
        ),
        follow=True,
    )

    assert response.status_code == 200
    assert any(m.startswith("Nothing was changed:") for m in _messages(response))
    document.refresh_from_db()
    assert document.title == "Finance budget"
    assert AccessLogEntry.objects.count() == 0


def test_who_can_see_this_lists_exactly_the_active_holders_of_its_roles(finance, hr):
    factories.user(username="alice", roles=[finance])
    factories.user(username="dave", roles=[finance, hr])
    bob = factories.user(username="bob", roles=[finance])
    bob.is_active = False
    bob.save()
    factories.user(username="carol", roles=[hr])
    factories.user(username="erin")
    document = factories.indexed_document(
        title="Q3 report", text="# Results\n\nQ3 revenue was 4.2 million euros.", roles=[finance]
    )

    response = _client(factories.superuser("root")).get(_change_url(document))

    members = response.context["audience"].members
    assert [(m.username, m.role_names) for m in members] == [
        ("alice", ("finance",)),
        ("dave", ("finance",)),
    ]
    section = _section(
        response.content.decode(), 'id="document-audience"', 'id="document-passages"'
    )
    for name in ("alice", "dave"):
        assert f"<td>{name}</td>" in section
    for name in ("bob", "carol", "erin"):
        assert f"<td>{name}</td>" not in section
    passages = _section(response.content.decode(), 'id="document-passages"')
    assert "4.2 million euros" in passages


# View as user


@pytest.fixture
def auditor():
    return factories.grant(factories.user(username="audrey", is_staff=True), "audit_conversations")


@pytest.fixture
def corpus(finance, hr):
    factories.indexed_document(
        title="Q3 report", text="# Results\n\nQ3 revenue was 4.2 million euros.", roles=[finance]
    )
    factories.indexed_document(
        title="Salary bands",
        text="# Pay\n\nThe salary band for engineers tops out at 90k euros.",
        roles=[hr],
    )


def _view_as(client, target, query, k=10):
    return client.post(reverse(VIEW_AS), {"username": target.username, "query": query, "k": k})


def _shown_chunk_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'data-chunk-id="(\d+)"', response.content.decode())]


def test_view_as_returns_exactly_what_the_users_retrieval_returns(corpus, finance, hr, auditor):
    target = factories.user(username="tom", roles=[finance])
    client = _client(auditor)
    query = "revenue and salary in euros"

    before = _view_as(client, target, query)

    expected = [h.chunk_id for h in chunk_search(scope=user_scope(user=target), query=query, k=10)]
    assert expected and _shown_chunk_ids(before) == expected
    result = _section(before.content.decode(), 'id="view-as-result"')
    assert "Q3 report" in result and "Salary bands" not in result
    assert f"Plan: <strong>{before.context['result'].plan.name}</strong>" in result

    target.roles.add(hr)
    after = _view_as(client, target, query)

    expected = [h.chunk_id for h in chunk_search(scope=user_scope(user=target), query=query, k=10)]
    assert _shown_chunk_ids(after) == expected
    assert "Salary bands" in _section(after.content.decode(), 'id="view-as-result"')
    entries = AccessLogEntry.objects.filter(action="audit.search_as_user")
    assert [(e.actor_id, e.target_id) for e in entries] == [(auditor.pk, target.pk)] * 2


def test_view_as_logs_one_entry_per_search(corpus, finance, auditor):
    target = factories.user(roles=[finance])
    _view_as(_client(auditor), target, "revenue")
    assert AccessLogEntry.objects.filter(action="audit.search_as_user").count() == 1
    assert AccessLogEntry.objects.count() == 1


def test_view_as_needs_the_audit_permission(finance, manager):
    target = factories.user(roles=[finance])
    for staff in (manager, factories.user(is_staff=True)):
        client = _client(staff)
        assert client.get(reverse(VIEW_AS)).status_code == 403
        assert _view_as(client, target, "revenue").status_code == 403
    assert AccessLogEntry.objects.count() == 0


def test_view_as_refuses_unknown_and_inactive_users_without_searching(auditor):
    inactive = factories.user(username="gone")
    inactive.is_active = False
    inactive.save()
    client = _client(auditor)

    for username in ("gone", "nobody"):
        response = client.post(reverse(VIEW_AS), {"username": username, "query": "x", "k": 10})
        assert response.status_code == 200
        assert response.context["form"].errors["username"]
    assert AccessLogEntry.objects.count() == 0


def test_the_document_page_links_to_view_as_for_auditors(finance):
    factories.user(username="alice", roles=[finance])
    document = _plain_document("Finance budget", [finance])
    auditing_admin = factories.superuser()
    page = _client(auditing_admin).get(_change_url(document)).content.decode()
    assert f"{reverse(VIEW_AS)}?username=alice" in page


# Actions


def _act(client, action, documents, confirm=True):
    data = {"action": action, "_selected_action": [d.pk for d in documents], "index": 0}
    if confirm:
        data["post"] = "yes"
    return client.post(reverse(CHANGELIST), data, follow=confirm)


def test_reingest_asks_for_confirmation_then_queues(finance, manager):
    document = _plain_document("Finance budget", [finance], status="ready", chunk_count=3)
    client = _client(manager)

    confirmation = _act(client, "reingest_selected", [document], confirm=False)
    assert confirmation.status_code == 200
    assert "Yes, re-ingest" in confirmation.content.decode()
    document.refresh_from_db()
    assert document.status == "ready"

    _act(client, "reingest_selected", [document])
    document.refresh_from_db()
    assert document.status == "queued"
    assert list(AccessLogEntry.objects.values_list("action", flat=True)) == ["document.reingested"]


def test_reingest_skips_a_document_the_actor_cannot_change(finance, hr, manager):
    shared = _plain_document("Shared handbook", [finance, hr], status="ready", chunk_count=3)

    response = _act(_client(manager), "reingest_selected", [shared])

    shared.refresh_from_db()
    assert shared.status == "ready"
    assert any(m.startswith("Skipped “Shared handbook”") for m in _messages(response))
    assert AccessLogEntry.objects.count() == 0


def test_delete_is_confirmed_checked_and_logged_per_document(finance, hr, manager):
    mine = _plain_document("Finance budget", [finance])
    shared = _plain_document("Shared handbook", [finance, hr])
    client = _client(manager)

    confirmation = _act(client, "delete_selected", [mine, shared], confirm=False)
    assert confirmation.status_code == 200
    assert "Are you sure" in confirmation.content.decode()
    assert Document.objects.count() == 2

    response = _act(client, "delete_selected", [mine, shared])

    assert set(Document.objects.values_list("title", flat=True)) == {"Shared handbook"}
    assert any(m.startswith("Skipped “Shared handbook”") for m in _messages(response))
    entries = AccessLogEntry.objects.all()
    assert [(e.action, e.target_id) for e in entries] == [("document.deleted", mine.pk)]


def test_the_delete_page_of_a_document_the_actor_cannot_change_is_refused(finance, hr, manager):
    shared = _plain_document("Shared handbook", [finance, hr])
    url = reverse("admin:knowledge_document_delete", args=[shared.pk])
    assert _client(manager).post(url, {"post": "yes"}).status_code == 403
    assert Document.objects.filter(pk=shared.pk).exists()
