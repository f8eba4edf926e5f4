"""The admin console in a real Chromium against uvicorn and the test database: an admin
uploads a document, grants a role, checks who can see a document, searches as two users,
and finds each of those steps in the access log.

No Celery worker runs here, so the uploaded file stays queued; the steps that need passages
use a document indexed by the factory.
"""

import csv
import io
import re

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone

from accounts.models import AccessLogEntry
from chatbot.models import AnswerAudit
from knowledge.models import Document
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-Console-Admin-7"
BUDGET_TITLE = "Lisbon office budget 2025"
BUDGET_TEXT = """# Lisbon office budget 2025

## Capital expenditure

The capital expenditure ceiling for the Lisbon office is 4.2 million euros for 2025.
Spending above the ceiling needs the finance director's written approval.

## Operating costs

Rent, utilities and cleaning for the Lisbon office are budgeted at 610,000 euros.
"""
CANARY = "4.2 million euros"
LEAVE_TITLE = "Parental leave policy"
LEAVE_TEXT = """# Parental leave policy

Every employee may take sixteen weeks of paid parental leave after a birth or an adoption.
Tell your manager and the HR team at least eight weeks before the leave starts.
"""
QUERY = "capital expenditure ceiling of the Lisbon office"
UPLOAD_NAME = "travel-approvals.md"
UPLOAD_TITLE = "Travel approvals"
UPLOAD_TEXT = b"""# Travel approvals

Trips abroad need the approval of a finance controller before anything is booked.
"""


@pytest.fixture
def console_world():
    finance = factories.role("finance")
    hr = factories.role("hr")
    admin = factories.user(username="root", is_superuser=True)
    # tests/conftest.py switches this process to MD5, which the web server does not accept;
    # hash the password the way the server checks it.
    pbkdf2 = PBKDF2PasswordHasher()
    admin.password = pbkdf2.encode(PASSWORD, pbkdf2.salt())
    admin.save(update_fields=["password"])
    ana = factories.user(username="ana", roles=[hr])  # gains finance through the console
    bob = factories.user(username="bob", roles=[hr])  # never holds finance
    carl = factories.user(username="carl", roles=[finance])
    carl.is_active = False  # holds finance, but an inactive user retrieves nothing
    carl.save(update_fields=["is_active"])
    budget = factories.indexed_document(title=BUDGET_TITLE, text=BUDGET_TEXT, roles=[finance])
    factories.indexed_document(title=LEAVE_TITLE, text=LEAVE_TEXT, roles=[hr])
    assert budget.chunk_count > 0
    # Three questions today for the usage dashboard.
    for outcome, username in (("answered", "ana"), ("answered", "bob"), ("not_found", "bob")):
        record = AnswerAudit.objects.create(
            user=ana if username == "ana" else bob,
            username=username,
            question="Where is the travel policy?",
            model="test-model",
            outcome=outcome,
            total_ms=1200,
            first_token_ms=300,
        )
        AnswerAudit.objects.filter(pk=record.pk).update(created_at=timezone.now())
    return {"admin": admin, "ana": ana, "bob": bob, "carl": carl, "budget": budget}


def _messages(page) -> list[str]:
    return [text.strip() for text in page.locator("ul.messagelist li").all_inner_texts()]


def _row(page, link_text: str):
    """The change-list row whose link reads exactly ``link_text``."""
    link = page.get_by_role("link", name=link_text, exact=True)
    return page.locator("#result_list tbody tr").filter(has=link)


def _view_as(page, *, username: str):
    """Search as ``username`` on the open view-as page; returns (titles of hits, plan name)."""
    page.fill("#id_username", username)
    page.fill("#id_query", QUERY)
    page.fill("#id_k", "5")
    page.get_by_role("button", name="Search as this user").click()
    result = page.locator("#view-as-result")
    result.wait_for()
    assert result.locator("h2").inner_text() == f"{username}’s results for “{QUERY}”"
    plan = re.search(r"Plan: (\S+), about", result.inner_text())
    assert plan, result.inner_text()
    titles = result.locator("tr.view-as-hit td:nth-child(2)").all_inner_texts()
    return titles, plan.group(1)


def _row_by_text(page, text: str):
    return page.locator("#result_list tbody tr").filter(has_text=text).first


def _log_rows(page) -> list[tuple[str, str, str]]:
    """(actor, action, target) of each access log row as shown."""
    rows = []
    for row in page.locator("#result_list tbody tr").all():
        rows.append(
            (
                row.locator("td.field-actor_username").inner_text().strip(),
                row.locator("td.field-action").inner_text().strip(),
                row.locator("td.field-target").inner_text().strip(),
            )
        )
    return rows


def _overflows(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth + 1"
    )


def test_an_admin_uploads_grants_a_role_checks_who_sees_a_document_and_views_as_users(
    web_server, chromium, console_world, screenshot
):
    ana, budget = console_world["ana"], console_world["budget"]
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)

    # 1. Log in.
    page.goto(f"{web_server}/admin/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{web_server}/admin/")
    assert page.locator("#site-name").inner_text() == "Knowledge console"
    tools = page.locator("#console-tools")
    assert tools.get_by_role("link", name="Usage dashboard").is_visible()
    assert tools.get_by_role("link", name="View as user").is_visible()
    screenshot(page, "console-01-index")

    # 2. Upload a Markdown file into finance.
    page.goto(f"{web_server}/admin/knowledge/document/")
    page.get_by_role("link", name="Upload documents").click()
    page.wait_for_url(re.compile(r".*/admin/knowledge/document/add/$"))
    page.set_input_files(
        "#id_files",
        files=[{"name": UPLOAD_NAME, "mimeType": "text/markdown", "buffer": UPLOAD_TEXT}],
    )
    page.get_by_label("finance", exact=True).check()
    assert not page.get_by_label("hr", exact=True).is_checked()
    screenshot(page, "console-02-upload")
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(f"{web_server}/admin/knowledge/document/")
    assert f"“{UPLOAD_NAME}” is queued for ingestion as {UPLOAD_TITLE}." in _messages(page)
    uploaded_row = _row(page, UPLOAD_TITLE)
    assert uploaded_row.locator("td.field-roles_display").inner_text() == "finance"
    # A worker may have picked it up if one runs in this session; it must not have failed.
    status = uploaded_row.locator("td.field-status_display").inner_text()
    assert re.match(r"^(queued|processing|ready)\b", status), status
    uploaded = Document.objects.get(title=UPLOAD_TITLE)
    assert [r.name for r in uploaded.roles.all()] == ["finance"]
    assert (uploaded.original_filename, uploaded.uploaded_by_id) == (
        UPLOAD_NAME,
        console_world["admin"].pk,
    )
    screenshot(page, "console-03-documents")

    # 3. Grant finance to ana with the Users list's action.
    page.goto(f"{web_server}/admin/accounts/user/")
    _row(page, "ana").locator("input.action-select").check()
    page.select_option("select[name=action]", "grant_role")
    page.get_by_role("button", name="Go").click()
    page.wait_for_selector("#id_role")
    assert page.locator("#content form li").all_inner_texts() == ["ana"]
    page.select_option("#id_role", label="finance")
    screenshot(page, "console-04-grant-role")
    page.get_by_role("button", name="Grant role").click()
    page.wait_for_url(f"{web_server}/admin/accounts/user/")
    assert "Granted 'finance' to 1 user(s)." in _messages(page)
    assert _row(page, "ana").locator("td.field-role_list").inner_text() == "finance, hr"
    assert _row(page, "bob").locator("td.field-role_list").inner_text() == "hr"
    assert sorted(ana.roles.values_list("name", flat=True)) == ["finance", "hr"]
    screenshot(page, "console-05-users")

    # 4. Who can see the indexed budget: ana now; not bob (no finance), not carl (inactive).
    page.goto(f"{web_server}/admin/knowledge/document/")
    page.get_by_role("link", name=BUDGET_TITLE, exact=True).click()
    page.wait_for_url(f"{web_server}/admin/knowledge/document/{budget.pk}/change/")
    audience = page.locator("#document-audience")
    audience.scroll_into_view_if_needed()
    assert "finance (1 active user)" in audience.inner_text()
    assert audience.locator("tbody td:first-child").all_inner_texts() == ["ana"]
    assert audience.locator("tbody td:nth-child(4)").all_inner_texts() == ["finance"]
    passages = page.locator("#document-passages")
    assert f"Passages ({budget.chunk_count})" in passages.locator("h2").inner_text()
    assert CANARY in passages.inner_text()
    screenshot(page, "console-06-who-can-see")

    # 5. View as ana (from the audience's link) finds the budget; bob finds only his own.
    audience.get_by_role("link", name="View as").click()
    page.wait_for_url(re.compile(r".*/admin/view-as/\?username=ana$"))
    assert page.input_value("#id_username") == "ana"
    titles, plan = _view_as(page, username="ana")
    assert BUDGET_TITLE in titles
    assert plan == AccessLogEntry.objects.filter(action="audit.search_as_user").get().after["plan"]
    assert plan in {"exact", "hnsw", "hnsw+exact-fallback"}
    assert "Roles: finance, hr." in page.locator("#view-as-result").inner_text()
    screenshot(page, "console-07-view-as-ana")

    titles, plan = _view_as(page, username="bob")
    assert titles, "bob holds hr and should at least find the leave policy"
    assert set(titles) == {LEAVE_TITLE}
    assert BUDGET_TITLE not in page.locator("#view-as-result").inner_text()
    assert CANARY not in page.locator("#view-as-result").inner_text()
    assert plan in {"exact", "hnsw", "hnsw+exact-fallback"}
    screenshot(page, "console-08-view-as-bob")

    # An inactive user is refused with the reason, not shown an empty result.
    page.fill("#id_username", "carl")
    page.get_by_role("button", name="Search as this user").click()
    page.locator(".field-username .errorlist").wait_for()
    assert "inactive" in page.locator(".field-username .errorlist").inner_text()
    assert page.locator("#view-as-result").count() == 0

    # 6. The access log shows the upload, the grant and both searches, newest first.
    page.goto(f"{web_server}/admin/accounts/accesslogentry/")
    rows = _log_rows(page)
    assert rows == [
        ("root", "searched as user (audit)", "user bob"),
        ("root", "searched as user (audit)", "user ana"),
        ("root", "user's roles changed", "user ana"),
        ("root", "document uploaded", f"document {UPLOAD_TITLE}"),
    ], rows
    grant = _row_by_text(page, "user's roles changed")
    assert (
        "roles: ['hr'] → roles: ['finance', 'hr']" in grant.locator("td.field-change").inner_text()
    )
    screenshot(page, "console-09-access-log")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    exported = download_info.value
    assert exported.suggested_filename == "access-log.csv"
    with open(exported.path(), newline="") as handle:
        records = list(csv.DictReader(io.StringIO(handle.read())))
    assert [(r["action"], r["target"]) for r in records] == [
        ("document.uploaded", UPLOAD_TITLE),
        ("user.roles_changed", "ana"),
        ("audit.search_as_user", "ana"),
        ("audit.search_as_user", "bob"),
    ]

    # 7. The usage dashboard shows the seeded questions.
    page.goto(f"{web_server}/admin/")
    page.get_by_role("link", name="Usage dashboard").click()
    page.wait_for_url(f"{web_server}/admin/dashboard/")
    assert page.locator("#stat-questions").get_attribute("data-value") == "3"
    assert page.locator("#stat-answered").get_attribute("data-value") == "2"
    assert page.locator("#stat-not_found").get_attribute("data-value") == "1"
    assert not _overflows(page)
    screenshot(page, "console-10-dashboard")
    page.set_viewport_size({"width": 1280, "height": 2000})
    screenshot(page, "console-11-dashboard-full")

    # The same pages at a narrow window still work without a sideways scroll of the page.
    narrow = chromium.new_context(viewport={"width": 900, "height": 900})
    narrow.add_cookies(context.cookies())
    small = narrow.new_page()
    small.set_default_timeout(60_000)
    small.goto(f"{web_server}/admin/")
    assert small.get_by_role("link", name="View as user").is_visible()
    assert not _overflows(small)
    screenshot(small, "console-12-narrow-index")
    small.goto(f"{web_server}/admin/knowledge/document/{budget.pk}/change/")
    assert small.locator("#document-audience tbody td:first-child").all_inner_texts() == ["ana"]
    screenshot(small, "console-13-narrow-document")
    small.goto(f"{web_server}/admin/view-as/")
    titles, _ = _view_as(small, username="ana")
    assert BUDGET_TITLE in titles
    assert small.get_by_role("button", name="Search as this user").is_visible()
    screenshot(small, "console-14-narrow-view-as")
    small.goto(f"{web_server}/admin/accounts/user/")
    assert _row(small, "ana").locator("td.field-role_list").inner_text() == "finance, hr"
    screenshot(small, "console-15-narrow-users")
    small.goto(f"{web_server}/admin/dashboard/")
    assert small.locator("#stat-questions").get_attribute("data-value") == "3"
    assert not _overflows(small)
    screenshot(small, "console-16-narrow-dashboard")
    narrow.close()
    context.close()
