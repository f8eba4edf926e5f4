"""The console's audit trail and usage dashboard: who may read them, that every read is
logged, that the CSV export holds exactly the filtered records, and that the dashboard's
figures are the seeded data's."""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from datetime import UTC, date, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessLogEntry
from chatbot.analytics import usage_summary
from chatbot.models import AnswerAudit, Conversation, Feedback, Message, MessageCitation
from knowledge.models import Document
from tests import factories

pytestmark = pytest.mark.django_db

Action = AccessLogEntry.Action


# Seeding


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def answer(*, owner, when: datetime, question: str = "Where is the fuel policy?") -> Message:
    conversation = Conversation.objects.create(owner=owner, title=question[:60])
    Message.objects.create(conversation=conversation, role="user", text=question)
    message = Message.objects.create(
        conversation=conversation, role="assistant", text="It is in the manual [1]."
    )
    Message.objects.filter(pk=message.pk).update(created_at=when)
    return message


def cite(message: Message, *documents: Document, first_chunk_id: int = 1000) -> None:
    for index, document in enumerate(documents, start=1):
        MessageCitation.objects.create(
            message=message,
            index=index,
            cited_chunk_id=first_chunk_id + index,
            document=document,
            cited_document_id=document.pk,
            title=document.title,
            snippet=f"passage {index} of {document.title}",
        )


def audit(
    *,
    user,
    when: datetime,
    outcome: str = "answered",
    fallback: bool = False,
    total_ms: int = 0,
    first_token_ms: int | None = None,
    role_ids=(),
    retrieved=(),
    shown=(),
    question: str = "A question?",
    message: Message | None = None,
) -> AnswerAudit:
    record = AnswerAudit.objects.create(
        user=user,
        username=user.username,
        role_ids=list(role_ids),
        question=question,
        message=message,
        conversation=message.conversation if message else None,
        retrieved=list(retrieved),
        shown_chunk_ids=list(shown),
        model="test-model",
        outcome=outcome,
        fallback_used=fallback,
        retrieval_ms=7,
        first_token_ms=first_token_ms,
        total_ms=total_ms,
    )
    AnswerAudit.objects.filter(pk=record.pk).update(created_at=when)
    return record


def hit(rank: int, chunk_id: int, document_id: int) -> dict:
    return {
        "rank": rank,
        "chunk_id": chunk_id,
        "document_id": document_id,
        "content_hash": f"hash{chunk_id}",
        "score": 0.5 / rank,
    }


def document(title: str, status: str = "ready", changed: datetime | None = None) -> Document:
    doc = Document.objects.create(title=title, status=status)
    if changed is not None:
        Document.objects.filter(pk=doc.pk).update(status_changed_at=changed)
    return doc


def percentile_cont(values, fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


# Users


@pytest.fixture
def auditor():
    return factories.grant(factories.user(is_staff=True), "audit_conversations")


@pytest.fixture
def staff_with_view_perms():
    """Staff holding Django's view permissions on every chat model, but not the audit one."""
    return factories.grant(
        factories.user(is_staff=True),
        "view_conversation",
        "view_message",
        "view_feedback",
        "view_answeraudit",
        "view_messagecitation",
    )


@pytest.fixture
def trail():
    """One conversation with a cited answer, its feedback and its audit record."""
    owner = factories.user(username="pilot")
    manual = document("Maintenance manual")
    message = answer(owner=owner, when=timezone.now())
    cite(message, manual)
    feedback = Feedback.objects.create(message=message, user=owner, rating="up")
    record = audit(
        user=owner,
        when=timezone.now(),
        message=message,
        retrieved=[hit(1, 1001, manual.pk)],
        shown=[1001],
    )
    return {
        "conversation": message.conversation,
        "message": message,
        "feedback": feedback,
        "audit": record,
    }


def admin_urls(trail) -> dict[str, str]:
    return {
        "dashboard": reverse("admin:dashboard"),
        "conversation list": reverse("admin:chatbot_conversation_changelist"),
        "conversation": reverse(
            "admin:chatbot_conversation_change", args=[trail["conversation"].pk]
        ),
        "message list": reverse("admin:chatbot_message_changelist"),
        "message": reverse("admin:chatbot_message_change", args=[trail["message"].pk]),
        "feedback list": reverse("admin:chatbot_feedback_changelist"),
        "feedback": reverse("admin:chatbot_feedback_change", args=[trail["feedback"].pk]),
        "audit list": reverse("admin:chatbot_answeraudit_changelist"),
        "audit": reverse("admin:chatbot_answeraudit_change", args=[trail["audit"].pk]),
        "audit export": reverse("admin:chatbot_answeraudit_export"),
    }


# Who may read


PAGES = [
    "dashboard",
    "conversation list",
    "conversation",
    "message list",
    "message",
    "feedback list",
    "feedback",
    "audit list",
    "audit",
    "audit export",
]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("who", ["staff", "staff with view permissions"])
def test_staff_without_the_audit_permission_gets_403_and_nothing_is_logged(
    client, trail, staff_with_view_perms, page, who
):
    user = staff_with_view_perms if who != "staff" else factories.user(is_staff=True)
    client.force_login(user)
    response = client.get(admin_urls(trail)[page])
    assert response.status_code == 403
    assert b"pilot" not in response.content
    assert not AccessLogEntry.objects.exists()


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("who", ["superuser", "auditor"])
def test_superusers_and_auditors_read_every_page(client, trail, auditor, page, who):
    client.force_login(factories.superuser() if who == "superuser" else auditor)
    response = client.get(admin_urls(trail)[page])
    assert response.status_code == 200


def test_the_console_index_lists_the_audit_trail_only_to_auditors(
    client, trail, auditor, staff_with_view_perms
):
    changelist = reverse("admin:chatbot_answeraudit_changelist")
    client.force_login(staff_with_view_perms)
    assert changelist not in client.get(reverse("admin:index")).content.decode()
    client.force_login(auditor)
    assert changelist in client.get(reverse("admin:index")).content.decode()


@pytest.mark.parametrize("model", ["conversation", "message", "feedback", "answeraudit"])
def test_nothing_is_added_changed_or_deleted_from_the_console(client, trail, model):
    client.force_login(factories.superuser())
    obj = {
        "conversation": trail["conversation"],
        "message": trail["message"],
        "feedback": trail["feedback"],
        "answeraudit": trail["audit"],
    }[model]
    assert client.get(reverse(f"admin:chatbot_{model}_add")).status_code == 403
    assert client.get(reverse(f"admin:chatbot_{model}_delete", args=[obj.pk])).status_code == 403
    change = reverse(f"admin:chatbot_{model}_change", args=[obj.pk])
    assert client.post(change, {}).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()
    page = client.get(change).content.decode()
    assert 'name="_save"' not in page


# Every read is logged


@pytest.mark.parametrize(
    ("page", "action", "target_type", "key"),
    [
        ("conversation", Action.CONVERSATION_READ, "conversation", "conversation"),
        ("message", Action.CONVERSATION_READ, "message", "message"),
        ("feedback", Action.AUDIT_READ, "feedback", "feedback"),
        ("audit", Action.AUDIT_READ, "answer_audit", "audit"),
    ],
)
def test_each_detail_read_writes_exactly_one_access_log_entry(
    client, trail, auditor, page, action, target_type, key
):
    client.force_login(auditor)
    response = client.get(admin_urls(trail)[page])
    assert response.status_code == 200
    entry = AccessLogEntry.objects.get()
    assert (entry.actor_id, entry.action) == (auditor.pk, action)
    assert (entry.target_type, entry.target_id) == (target_type, trail[key].pk)
    assert "pilot" in entry.target_label

    client.get(admin_urls(trail)[page])
    assert AccessLogEntry.objects.count() == 2


@pytest.mark.parametrize(
    "page", ["conversation list", "message list", "feedback list", "audit list"]
)
def test_each_list_read_writes_one_entry_with_its_filters(client, trail, auditor, page):
    client.force_login(auditor)
    response = client.get(admin_urls(trail)[page], {"q": "fuel"})
    assert response.status_code == 200
    entry = AccessLogEntry.objects.get()
    assert (entry.actor_id, entry.action, entry.target_id) == (auditor.pk, Action.AUDIT_READ, None)
    assert entry.target_type.endswith("_list")
    assert entry.after["query"] == "q=fuel"
    assert entry.after["filters"] == {"q": ["fuel"]}


def test_an_unknown_record_is_not_logged_as_read(client, trail, auditor):
    client.force_login(auditor)
    client.get(reverse("admin:chatbot_answeraudit_change", args=[trail["audit"].pk + 1000]))
    client.get(reverse("admin:chatbot_conversation_change", args=[999999]))
    assert not AccessLogEntry.objects.exists()


def test_the_audit_detail_shows_the_passages_it_used(client, auditor):
    owner = factories.user(username="mechanic")
    manual = document("Landing gear manual")
    gone = document("Withdrawn bulletin")
    gone_id = gone.pk
    gone.delete()
    message = answer(owner=owner, when=timezone.now())
    cite(message, manual)
    record = audit(
        user=owner,
        when=timezone.now(),
        message=message,
        retrieved=[hit(1, 1001, manual.pk), hit(2, 2002, gone_id)],
        shown=[1001],
    )
    client.force_login(auditor)
    page = client.get(reverse("admin:chatbot_answeraudit_change", args=[record.pk]))
    html = page.content.decode()
    passages = html[html.index('class="audit-passages"') :]
    rows = re.findall(
        r"<tr><td>(\d+)</td><td>(yes|no)</td><td>([^<]*)</td><td>(\d+)</td>"
        r"<td>(\d+)</td>",
        passages,
    )
    assert rows == [
        ("1", "yes", "Landing gear manual", str(manual.pk), "1001"),
        ("2", "no", "(document deleted)", str(gone_id), "2002"),
    ]
    assert "passage 1 of Landing gear manual" in html


# The CSV export


@pytest.fixture
def audits():
    finance, maintenance = factories.role("finance"), factories.role("maintenance")
    fuel, gear = document("Fuel policy"), document("Gear manual")
    alice = factories.user(username="alice", roles=[finance])
    bob = factories.user(username="bob", roles=[maintenance])
    carol = factories.user(username="carol", roles=[finance, maintenance])
    now = timezone.now()
    cited = answer(owner=alice, when=now)
    cite(cited, fuel, first_chunk_id=10)
    records = {
        "alice": audit(
            user=alice,
            when=now - timedelta(minutes=3),
            role_ids=[finance.pk],
            retrieved=[hit(1, 11, fuel.pk)],
            shown=[11],
            total_ms=900,
            first_token_ms=150,
            question="What does fuel cost?",
            message=cited,
        ),
        "bob": audit(
            user=bob,
            when=now - timedelta(minutes=2),
            role_ids=[maintenance.pk],
            retrieved=[hit(1, 21, gear.pk)],
            shown=[21],
            outcome="not_found",
            question="How is the gear checked?",
        ),
        "carol": audit(
            user=carol,
            when=now - timedelta(minutes=1),
            role_ids=[finance.pk, maintenance.pk],
            retrieved=[hit(1, 21, gear.pk), hit(2, 11, fuel.pk), hit(3, 12, fuel.pk)],
            shown=[21, 11],
            question='=HYPERLINK("http://evil.example","click")',
        ),
    }
    return {
        "records": records,
        "finance": finance,
        "maintenance": maintenance,
        "fuel": fuel,
        "gear": gear,
    }


def exported(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (lambda a: {"username": "alice"}, ["alice"]),
        (lambda a: {"role": a["finance"].pk}, ["carol", "alice"]),
        (lambda a: {"role": a["maintenance"].pk}, ["carol", "bob"]),
        (lambda a: {"document": a["gear"].pk}, ["carol", "bob"]),
        (lambda a: {"document": a["fuel"].pk, "role": a["maintenance"].pk}, ["carol"]),
        (lambda a: {"outcome__exact": "not_found"}, ["bob"]),
        (lambda a: {}, ["carol", "bob", "alice"]),
    ],
    ids=[
        "user",
        "role finance",
        "role maintenance",
        "document",
        "document and role",
        "outcome",
        "everything",
    ],
)
def test_the_list_and_its_export_hold_exactly_the_filtered_records(
    client, auditor, audits, query, expected
):
    params = query(audits)
    client.force_login(auditor)
    listing = client.get(reverse("admin:chatbot_answeraudit_changelist"), params)
    assert [a.username for a in listing.context["cl"].result_list] == expected
    html = listing.content.decode()
    export_link = re.search(r'id="export-csv" href="([^"]+)"', html).group(1)
    AccessLogEntry.objects.all().delete()

    rows = exported(client.get(export_link.replace("&amp;", "&")))
    assert [row["username"] for row in rows] == expected
    entry = AccessLogEntry.objects.get()
    assert (entry.actor_id, entry.action) == (auditor.pk, Action.AUDIT_READ)
    assert entry.target_type == "answer_audit_export"
    assert entry.after["count"] == len(expected)
    assert entry.after["filters"] == {key: [str(value)] for key, value in params.items()}


def test_the_export_has_every_column_and_neutralises_formulas(client, auditor, audits):
    client.force_login(auditor)
    rows = exported(client.get(reverse("admin:chatbot_answeraudit_export")))
    assert list(rows[0]) == [
        "created_at",
        "username",
        "roles",
        "question",
        "surface",
        "channel",
        "outcome",
        "model",
        "retrieval_ms",
        "first_token_ms",
        "total_ms",
        "fallback_used",
        "cited_chunk_ids",
        "shown_chunk_ids",
        "retrieved_document_ids",
    ]
    by_user = {row["username"]: row for row in rows}
    carol, alice = by_user["carol"], by_user["alice"]
    assert carol["question"] == '\'=HYPERLINK("http://evil.example","click")'
    assert carol["roles"] == "finance; maintenance"
    assert (carol["surface"], carol["channel"]) == ("web", "")
    assert carol["retrieved_document_ids"] == f"{audits['gear'].pk} {audits['fuel'].pk}"
    assert carol["shown_chunk_ids"] == "21 11"
    assert carol["cited_chunk_ids"] == ""
    assert (alice["cited_chunk_ids"], alice["total_ms"], alice["first_token_ms"]) == (
        "11",
        "900",
        "150",
    )
    stored = AnswerAudit.objects.get(pk=audits["records"]["alice"].pk)
    assert alice["created_at"] == stored.created_at.isoformat()


def test_the_export_action_exports_the_selected_records(client, auditor, audits):
    records = audits["records"]
    client.force_login(auditor)
    response = client.post(
        reverse("admin:chatbot_answeraudit_changelist"),
        {
            "action": "export_selected_csv",
            "index": 0,
            "_selected_action": [records["bob"].pk, records["alice"].pk],
        },
    )
    assert sorted(row["username"] for row in exported(response)) == ["alice", "bob"]
    entry = AccessLogEntry.objects.get()
    assert (entry.target_type, entry.after["count"]) == ("answer_audit_export", 2)


def test_the_date_range_filter_and_a_bad_date(client, auditor, audits):
    AnswerAudit.objects.filter(pk=audits["records"]["bob"].pk).update(
        created_at=at(date(2024, 1, 10))
    )
    client.force_login(auditor)
    url = reverse("admin:chatbot_answeraudit_changelist")
    listing = client.get(url, {"created_from": "2024-01-10", "created_to": "2024-01-10"})
    assert [a.username for a in listing.context["cl"].result_list] == ["bob"]

    bad = client.get(url, {"created_from": "10/01/2024"})
    assert bad.status_code == 200
    assert "is not a date" in bad.content.decode()
    export = client.get(reverse("admin:chatbot_answeraudit_export"), {"created_to": "soon"})
    assert export.status_code == 400
    assert "is not a date" in export.content.decode()


# The dashboard


FIRST, LAST = date(2025, 3, 1), date(2025, 3, 7)


@pytest.fixture
def usage():
    """A week of usage, plus records just outside it that must not count."""
    asker = factories.user(username="asker")
    rater = factories.user(username="rater")
    seeds = [
        # (when, outcome, fallback, total_ms, first_token_ms)
        (at(FIRST, 0, 0, 0), "answered", False, 120, 40),
        (at(FIRST, 9), "answered", False, 340, 90),
        (at(FIRST, 23, 59, 59), "not_found", False, 30, None),
        (at(date(2025, 3, 3), 8), "answered", True, 2200, 700),
        (at(date(2025, 3, 3), 9), "answered", False, 560, 110),
        (at(date(2025, 3, 3), 10), "unavailable", False, 5, None),
        (at(date(2025, 3, 4), 10), "failed", False, 800, 300),
        (at(date(2025, 3, 4), 11), "cancelled", False, 400, 120),
        (at(LAST, 23, 59, 59), "answered", False, 1000, 250),
    ]
    outside = [
        (at(FIRST - timedelta(days=1), 23, 59, 59), "answered", False, 99999, 99999),
        (at(LAST + timedelta(days=1), 0, 0, 0), "failed", False, 99999, 99999),
    ]
    for when, outcome, fallback, total, first in seeds + outside:
        audit(
            user=asker,
            when=when,
            outcome=outcome,
            fallback=fallback,
            total_ms=total,
            first_token_ms=first,
        )

    manual, policy, bulletin = document("Manual"), document("Policy"), document("Bulletin")
    in_period = [answer(owner=asker, when=at(FIRST, 10, i)) for i in range(4)]
    cite(in_period[0], manual, policy)
    cite(in_period[1], manual)
    cite(in_period[2], manual)
    cite(in_period[3], policy, bulletin)
    MessageCitation.objects.create(  # the same document twice in one answer counts once
        message=in_period[0],
        index=3,
        cited_chunk_id=5,
        document=manual,
        cited_document_id=manual.pk,
        title="Manual",
        snippet="again",
    )
    late = answer(owner=asker, when=at(LAST + timedelta(days=1), 1))
    cite(late, bulletin)
    late_2 = answer(owner=asker, when=at(LAST + timedelta(days=1), 2))
    cite(late_2, bulletin)
    Document.objects.filter(pk=manual.pk).update(title="Manual (rev. 2)")

    ratings = [
        ("up", at(FIRST, 11)),
        ("up", at(LAST, 11)),
        ("up", at(LAST, 12)),
        ("down", at(LAST, 13)),
        ("down", at(LAST + timedelta(days=2))),
    ]
    for rating, when in ratings:
        message = answer(owner=asker, when=when)
        feedback = Feedback.objects.create(message=message, user=rater, rating=rating)
        Feedback.objects.filter(pk=feedback.pk).update(created_at=when)

    document("Queued one", status="queued")
    document("Queued two", status="queued")
    document("Being parsed", status="processing")
    document("Broken in period", status="failed", changed=at(date(2025, 3, 5)))
    document("Broken before", status="failed", changed=at(date(2025, 2, 1)))
    return {"seeds": seeds, "manual": manual, "policy": policy, "bulletin": bulletin}


def dashboard(client, **params):
    response = client.get(reverse("admin:dashboard"), params)
    assert response.status_code == 200
    html = response.content.decode()
    stats = dict(re.findall(r'id="stat-(\w+)" data-value="([^"]*)"', html))
    days = {
        day: int(n) for day, n in re.findall(r'data-day="([\d-]+)" data-questions="(\d+)"', html)
    }
    cited = [
        (int(doc), int(n))
        for doc, n in re.findall(r'data-document-id="(\d+)" data-answers="(\d+)"', html)
    ]
    return html, stats, days, cited


def test_the_dashboard_shows_the_seeded_figures(client, auditor, usage):
    client.force_login(auditor)
    html, stats, days, cited = dashboard(client, **{"from": "2025-03-01", "to": "2025-03-07"})

    seeds = usage["seeds"]
    expected_days = {(FIRST + timedelta(days=i)).isoformat(): 0 for i in range(7)}
    for when, *_ in seeds:
        expected_days[when.date().isoformat()] += 1
    assert days == expected_days  # the days around the period are left out
    assert days["2025-03-02"] == 0

    assert int(stats["questions"]) == len(seeds) == 9
    assert int(stats["answered"]) == sum(1 for s in seeds if s[1] == "answered" and not s[2])
    assert int(stats["fallback"]) == sum(1 for s in seeds if s[2])
    for outcome in ("not_found", "unavailable", "failed", "cancelled"):
        assert int(stats[outcome]) == sum(1 for s in seeds if s[1] == outcome), outcome
    legend = re.search(r'id="share-answered">(.*?)</li>', html).group(1)
    assert legend.endswith(f"answered: 4 ({100 * 4 / 9:.1f}%)")

    assert (int(stats["feedback_up"]), int(stats["feedback_down"])) == (3, 1)
    assert float(stats["feedback_ratio"]) == pytest.approx(3 / 4)

    assert cited == [
        (usage["manual"].pk, 3),
        (usage["policy"].pk, 2),
        (usage["bulletin"].pk, 1),
    ]
    assert "Manual (rev. 2)" in html

    assert int(stats["queue_depth"]) == 3
    assert int(stats["documents_failed"]) == 2
    assert int(stats["documents_failed_in_period"]) == 1

    answered_ms = [s[3] for s in seeds if s[1] == "answered"]
    first_ms = [s[4] for s in seeds if s[4] is not None]
    assert float(stats["latency_median"]) == pytest.approx(statistics.median(answered_ms))
    assert float(stats["latency_p95"]) == pytest.approx(percentile_cont(answered_ms, 0.95))
    assert float(stats["first_token_median"]) == pytest.approx(statistics.median(first_ms))
    assert float(stats["first_token_p95"]) == pytest.approx(percentile_cont(first_ms, 0.95))
    assert float(stats["latency_p95"]) == pytest.approx(1960.0)  # 1000 + 0.8 * (2200 - 1000)

    assert html.count('<rect class="s-') >= 9  # the charts are drawn, server-side
    content = html.split('id="content-main"')[1].split("<footer")[0]
    assert "<script" not in content


def test_a_period_without_questions_shows_zeros_not_errors(client, auditor, usage):
    client.force_login(auditor)
    _html, stats, days, cited = dashboard(client, **{"from": "2020-01-01", "to": "2020-01-03"})
    assert days == {"2020-01-01": 0, "2020-01-02": 0, "2020-01-03": 0}
    assert stats["questions"] == "0"
    assert stats["latency_median"] == "" and stats["feedback_ratio"] == ""
    assert cited == []
    assert stats["queue_depth"] == "3"  # queue figures are as of now


def test_presets_end_today(client, auditor):
    asker = factories.user()
    today = timezone.localdate()
    audit(user=asker, when=timezone.now())
    audit(user=asker, when=at(today - timedelta(days=7)))
    client.force_login(auditor)
    for days_back in (7, 30, 90):
        _html, stats, days, _ = dashboard(client, days=days_back)
        assert len(days) == days_back
        assert max(days) == today.isoformat()
        assert days[today.isoformat()] == 1
        assert stats["questions"] == ("1" if days_back == 7 else "2")
    _html, _stats, days, _ = dashboard(client)
    assert len(days) == 30


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2025-13-45"}, "is not a date"),
        ({"to": "yesterday"}, "is not a date"),
        ({"from": "2025-03-07", "to": "2025-03-01"}, "after it ends"),
        ({"from": "2015-01-01", "to": "2025-01-01"}, "at most 366 days"),
        ({"days": "1000"}, "Choose a period"),
    ],
)
def test_a_bad_period_gets_a_clear_message_and_the_last_30_days(client, auditor, params, message):
    client.force_login(auditor)
    html, _stats, days, _ = dashboard(client, **params)
    assert message in html
    assert len(days) == 30


def test_usage_summary_takes_datetimes_as_a_half_open_range(usage):
    start = at(FIRST, 9)
    summary = usage_summary(since=start, until=at(date(2025, 3, 3), 9))
    assert summary.questions == 3  # 09:00 on the 1st, 23:59:59 on the 1st, 08:00 on the 3rd
    assert [d.questions for d in summary.questions_per_day] == [2, 0, 1]
    assert summary.fallback == 1 and summary.answered == 1 and summary.not_found == 1
