"""The console's evaluation pages: who may read them, that each read of a run's cases is
logged naming the run, that a run shows its failures (with what was retrieved and said)
before its passes, and that a comparison sorts cases into got better and got worse."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessLogEntry
from evaluation import gold
from evaluation.models import EvaluationCase, EvaluationRun
from tests import factories

pytestmark = pytest.mark.django_db

Action = AccessLogEntry.Action
PASSAGE_CANARY = "Board minutes: the merger closes at €48.7 million"


# Seeding


def stored_run(*, label: str = "", metrics: dict | None = None, cases=(), **fields):
    """A finished run with the given figures and cases, as the harness would store it.

    Each case is (case_id, passed, answer) or a dict of EvaluationCase fields."""
    run = EvaluationRun.objects.create(
        label=label,
        gold_set=fields.pop("gold_set", "console-test"),
        status=EvaluationRun.Status.FINISHED,
        model=fields.pop("model", "qwen-small"),
        revision=fields.pop("revision", "0123456789abcdef0123456789abcdef01234567"),
        settings=fields.pop("settings", {"k": 5, "INFERENCE_URL": "http://inference:8001"}),
        metrics=metrics if metrics is not None else {"cases": len(cases), "k": 5},
        case_count=len(cases),
        **fields,
    )
    for position, spec in enumerate(cases, start=1):
        if not isinstance(spec, dict):
            case_id, passed, answer = spec
            spec = {"case_id": case_id, "answer": answer, "problems": [] if passed else ["wrong"]}
        stored_case(run, position=position, **spec)
    return run


def stored_case(run: EvaluationRun, *, position: int, case_id: str, **fields) -> EvaluationCase:
    values = {
        "question": f"What does {case_id} say?",
        "asker": "eve_employee",
        "outcome": EvaluationCase.Outcome.ANSWERED,
        "answer": f"The answer to {case_id}.",
        "problems": [],
        **fields,
    }
    return EvaluationCase.objects.create(run=run, position=position, case_id=case_id, **values)


def passage(rank: int, text: str, *, document: str = "policy.md", score: float = 0.8) -> dict:
    return {
        "rank": rank,
        "document_id": 40 + rank,
        "document": document,
        "title": document.rsplit(".", 1)[0].title(),
        "chunk_id": 900 + rank,
        "score": score,
        "text": text,
    }


def detail_url(run) -> str:
    return reverse("admin:evaluation-run", args=[run.pk])


def compare_url(a, b) -> str:
    return f"{reverse('admin:evaluation-compare')}?a={a.pk}&b={b.pk}"


def between(html: str, start: str, end: str) -> str:
    """The part of the page from the element with id ``start`` to the one with id ``end``."""
    return html[html.index(f'id="{start}"') : html.index(f'id="{end}"')]


# Who may read


@pytest.fixture
def two_runs():
    leaky = {
        "case_id": "merger",
        "problems": ["a canary leaked"],
        "leaks": ["€48.7 million"],
        "retrieved": [passage(1, PASSAGE_CANARY, document="board-minutes.md")],
    }
    a = stored_run(label="before", cases=[leaky])
    b = stored_run(label="after", cases=[leaky])
    return a, b


def actor(who: str):
    finance = factories.role("finance")
    return {
        "superuser": lambda: factories.superuser(),
        "auditor": lambda: factories.grant(factories.user(is_staff=True), "audit_conversations"),
        "role manager": lambda: factories.user(is_staff=True, manages=[finance]),
        "plain staff": lambda: factories.user(is_staff=True),
        "anonymous": lambda: None,
    }[who]()


PAGES = {
    "runs": lambda a, b: reverse("admin:evaluation-runs"),
    "run detail": lambda a, b: detail_url(a),
    "compare": lambda a, b: compare_url(a, b),
}

# (actor, page, expected): 200 shown, 403 refused, "login" sent to the console's login.
MATRIX = [
    (who, page, expected)
    for who, expected in [
        ("superuser", 200),
        ("auditor", 200),
        ("role manager", 403),
        ("plain staff", 403),
        ("anonymous", "login"),
    ]
    for page in PAGES
]


@pytest.mark.parametrize(("who", "page", "expected"), MATRIX)
def test_only_auditors_read_evaluation_runs(client, two_runs, who, page, expected):
    user = actor(who)
    if user is not None:
        client.force_login(user)
    url = PAGES[page](*two_runs)
    response = client.get(url)
    if expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    else:
        assert response.status_code == expected
    if expected != 200:
        assert PASSAGE_CANARY.encode() not in response.content
        assert b"before" not in response.content
        assert not AccessLogEntry.objects.exists()
    elif page != "runs":
        assert AccessLogEntry.objects.filter(actor_id=user.pk).exists()


@pytest.mark.parametrize(
    ("who", "linked"),
    [("superuser", True), ("auditor", True), ("role manager", False), ("plain staff", False)],
)
def test_the_console_index_links_the_runs_only_for_who_may_read_them(client, who, linked):
    client.force_login(actor(who))
    html = client.get(reverse("admin:index")).content.decode()
    assert (reverse("admin:evaluation-runs") in html) is linked
    assert reverse("admin:dashboard") in html


def test_a_denied_user_gets_403_before_the_query_is_read(client):
    client.force_login(actor("plain staff"))
    response = client.get(reverse("admin:evaluation-compare"), {"a": "x"})
    assert response.status_code == 403


# The runs list


def test_the_list_shows_every_run_newest_first_with_its_key_figures(client):
    old = stored_run(
        label="baseline",
        metrics={"k": 5, "hit_at_k": 0.8, "accuracy": 0.5, "fallback_rate": None, "leaks": 0},
    )
    EvaluationRun.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(days=1))
    new = stored_run(
        label="bigger model",
        metrics={"k": 5, "hit_at_k": 0.9, "accuracy": 0.75, "fallback_rate": 0.125, "leaks": 2},
    )
    client.force_login(actor("auditor"))
    html = client.get(reverse("admin:evaluation-runs")).content.decode()
    assert re.findall(r'class="evaluation-run" data-run-id="(\d+)"', html) == [
        str(new.pk),
        str(old.pk),
    ]
    rows = html.split('class="evaluation-run" ')[1:]
    assert "bigger model" in rows[0] and "0.750" in rows[0] and "0.125" in rows[0]
    assert "01234567" in rows[0] and "qwen-small" in rows[0]
    assert re.search(r'figure-leaks alarm">2<', rows[0])
    assert re.search(r'figure-leaks">0<', rows[1])
    assert re.search(r'figure-fallback_rate">n/a<', rows[1])
    assert f'name="a" value="{old.pk}"' in html and f'name="b" value="{new.pk}"' in html


def test_the_list_shows_fifty_runs_a_page(client):
    runs = [stored_run(label=f"run {n}") for n in range(51)]
    client.force_login(actor("auditor"))
    first = client.get(reverse("admin:evaluation-runs")).content.decode()
    second = client.get(reverse("admin:evaluation-runs"), {"page": 2}).content.decode()
    assert first.count('class="evaluation-run" ') == 50
    assert re.findall(r'class="evaluation-run" data-run-id="(\d+)"', second) == [str(runs[0].pk)]
    assert "Page 2 of 2" in second


# One run


@pytest.fixture
def mixed_run():
    return stored_run(
        label="nightly",
        metrics={"cases": 2, "k": 5, "accuracy": 0.5, "citation_precision": None, "leaks": 0},
        cases=[
            {
                "case_id": "hotel-cap-london",
                "answer": "Hotels in London are capped at 180 EUR a night [1].",
                "cited_documents": ["travel.md"],
                "expected_documents": ["travel.md"],
            },
            {
                "case_id": "meal-per-diem",
                "question": "What is the daily meal allowance?",
                "tags": ["identifier"],
                "expected_documents": ["expenses.md"],
                "hit_rank": 2,
                "outcome": EvaluationCase.Outcome.FALLBACK,
                "answer": "Meals are reimbursed at 30 EUR a day.",
                "cited_documents": ["travel.md"],
                "problems": ["the expected facts are missing", "cited travel.md, not expected"],
                "retrieved": [
                    passage(1, "Breakfast is included in the hotel rate.", document="travel.md"),
                    passage(2, "The meal per diem is 45 EUR.", document="expenses.md"),
                ],
            },
        ],
    )


def test_the_detail_shows_failures_first_with_what_was_retrieved_and_said(client, mixed_run):
    client.force_login(actor("auditor"))
    response = client.get(detail_url(mixed_run))
    assert response.status_code == 200
    html = response.content.decode()
    failing = between(html, "failing-cases", "passing-cases")
    assert "Failing cases (1)" in failing
    assert "meal-per-diem" in failing and "hotel-cap-london" not in failing
    for shown in [
        "What is the daily meal allowance?",
        "Meals are reimbursed at 30 EUR a day.",
        "the expected facts are missing",
        'case-outcome">Fallback, not correct',
        "The meal per diem is 45 EUR.",
        "Breakfast is included in the hotel rate.",
        "expenses.md",
        "identifier",
        "first expected document at rank 2",
    ]:
        assert shown in failing, shown
    assert failing.index("Breakfast is included") < failing.index("The meal per diem")
    passing = html[html.index('id="passing-cases"') :]
    assert "Passing cases (1)" in passing
    assert "hotel-cap-london" in passing and "<details" in passing


def test_the_summary_table_uses_the_metrics_labels_and_says_n_a(client, mixed_run):
    client.force_login(actor("auditor"))
    html = client.get(detail_url(mixed_run)).content.decode()
    summary = between(html, "run-summary", "failing-cases")
    assert re.search(r"correct, any form</th><td class=\"num\">0.500<", summary)
    assert re.search(r"citation precision</th><td class=\"num\">n/a<", summary)
    assert "retrieval hit@5" in summary
    assert "http://inference:8001" in between(html, "run-settings", "run-summary")


def test_show_failures_leaves_the_passing_cases_out(client, mixed_run):
    client.force_login(actor("auditor"))
    html = client.get(detail_url(mixed_run), {"show": "failures"}).content.decode()
    assert "meal-per-diem" in html
    assert "hotel-cap-london" not in html
    assert "Show the 1 passing case" in html


def expected_facts_of(html: str, case_id: str) -> str:
    """The expected facts shown for one case of a run's page."""
    after = html[html.index(f'data-case-id="{case_id}"') :]
    return re.search(r'class="expected-facts">(.*?)</dd>', after, re.DOTALL).group(1)


def test_the_detail_shows_each_cases_stored_expected_facts(client):
    run = stored_run(
        cases=[
            {
                "case_id": "meal-per-diem",
                "problems": ["the expected facts are missing"],
                "expected_facts": ["45 EUR", "forty-five euros", r"matches /\b45\s*EUR\b/"],
            },
            {
                "case_id": "hotel-cap",
                "problems": ["wrong"],
                "expected_facts": ["180 EUR"],
            },
            {"case_id": "no-facts", "problems": ["wrong"], "expected_facts": []},
            {
                "case_id": "secret-project",
                "problems": ["wrong"],
                "expected_not_found": True,
                "expected_facts": [],
            },
        ]
    )
    client.force_login(actor("auditor"))
    html = client.get(detail_url(run)).content.decode()

    assert expected_facts_of(html, "meal-per-diem") == (
        r"“45 EUR”, or “forty-five euros”, or <code>matches /\b45\s*EUR\b/</code>"
    )
    assert expected_facts_of(html, "hotel-cap") == "“180 EUR”"
    assert expected_facts_of(html, "no-facts") == "—"
    not_found = html[html.index('data-case-id="secret-project"') :]
    assert "the not-found answer" in not_found
    assert 'class="expected-facts"' not in not_found


def test_the_stored_facts_show_though_the_gold_file_changed_or_is_gone(
    client, tmp_path, monkeypatch
):
    # The file now expects something else: the page still shows what the run was scored on.
    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\ncases:\n"
        "  - id: meal-per-diem\n    question: What is the daily meal allowance?\n"
        "    user: eve\n    expect: {any_of: ['50 EUR']}\n"
    )
    monkeypatch.setattr(gold, "SETS_DIR", tmp_path)
    run = stored_run(
        gold_set="tiny",
        gold_set_digest="0" * 64,
        cases=[
            {
                "case_id": "meal-per-diem",
                "problems": ["wrong"],
                "expected_facts": ["45 EUR", "matches /forty-five/"],
            }
        ],
    )
    client.force_login(actor("auditor"))

    for _file in ("changed", "gone"):
        response = client.get(detail_url(run))
        assert response.status_code == 200
        html = response.content.decode()
        facts = expected_facts_of(html, "meal-per-diem")
        assert facts == "“45 EUR”, or <code>matches /forty-five/</code>"
        assert "50 EUR" not in html
        assert "gold set file" not in html
        (tmp_path / "tiny.yaml").unlink(missing_ok=True)


def test_each_detail_read_writes_an_access_log_entry_naming_the_run(client, mixed_run):
    auditor = actor("auditor")
    client.force_login(auditor)
    client.get(detail_url(mixed_run))
    entry = AccessLogEntry.objects.get()
    assert (entry.actor_id, entry.action) == (auditor.pk, Action.AUDIT_READ)
    assert (entry.target_type, entry.target_id) == ("evaluation_run", mixed_run.pk)
    assert "nightly" in entry.target_label
    client.get(detail_url(mixed_run), {"show": "failures"})
    assert AccessLogEntry.objects.count() == 2


def test_the_runs_list_shows_no_cases_and_is_not_logged(client, mixed_run):
    client.force_login(actor("auditor"))
    html = client.get(reverse("admin:evaluation-runs")).content.decode()
    assert "nightly" in html
    assert "Meals are reimbursed" not in html
    assert not AccessLogEntry.objects.exists()


# Two runs


@pytest.fixture
def before_after():
    a = stored_run(
        label="before",
        metrics={"cases": 5, "k": 5, "accuracy": 0.5, "leaks": 1, "citation_precision": None,
                 "total_p50_ms": 900.0},
        cases=[
            ("fixed", False, "I could not find that."),
            ("broken", True, "The cap is 180 EUR."),
            ("reworded", True, "It is 45 EUR."),
            ("stuck", False, "No idea."),
            ("dropped", True, "Old case."),
        ],
    )  # fmt: skip
    b = stored_run(
        label="after",
        metrics={"cases": 5, "k": 5, "accuracy": 0.75, "leaks": 0, "citation_precision": 0.8,
                 "total_p50_ms": 1000.0},
        cases=[
            ("fixed", True, "The per diem is 45 EUR."),
            ("broken", False, "I could not find that."),
            ("reworded", True, "The daily allowance is 45 EUR."),
            ("stuck", False, "No idea."),
            ("added", True, "New case."),
        ],
    )  # fmt: skip
    return a, b


def test_the_comparison_sorts_cases_into_better_and_worse(client, before_after):
    client.force_login(actor("auditor"))
    response = client.get(compare_url(*before_after))
    assert response.status_code == 200
    html = response.content.decode()
    better = between(html, "got-better", "got-worse")
    worse = between(html, "got-worse", "changed-answer")
    changed = between(html, "changed-answer", "still-failing")
    still = between(html, "still-failing", "unchanged-passes")
    only_a = between(html, "only-in-a", "only-in-b")
    only_b = html[html.index('id="only-in-b"') :]
    assert re.findall(r'evaluation-pair-case" data-case-id="([^"]+)"', better) == ["fixed"]
    assert "The per diem is 45 EUR." in better
    assert re.findall(r'evaluation-pair-case" data-case-id="([^"]+)"', worse) == ["broken"]
    assert re.findall(r'evaluation-pair-case" data-case-id="([^"]+)"', changed) == ["reworded"]
    assert re.findall(r'evaluation-pair-case" data-case-id="([^"]+)"', still) == ["stuck"]
    assert 'data-case-id="dropped"' in only_a and 'data-case-id="added"' not in only_a
    assert 'data-case-id="added"' in only_b


def difference_of(html: str, key: str) -> str:
    row = re.search(rf'data-key="{key}">(.*?)</tr>', html, re.DOTALL).group(1)
    cells = re.findall(r'<td class="num figure-(a|b|difference)[^"]*">([^<]*)<', row)
    return {column: text.strip() for column, text in cells}


def test_the_comparison_gives_each_figures_difference(client, before_after):
    client.force_login(actor("auditor"))
    html = client.get(compare_url(*before_after)).content.decode()
    assert difference_of(html, "accuracy") == {"a": "0.500", "b": "0.750", "difference": "+0.250"}
    assert difference_of(html, "leaks") == {"a": "1", "b": "0", "difference": "-1"}
    assert difference_of(html, "cases") == {"a": "5", "b": "5", "difference": "0"}
    assert difference_of(html, "citation_precision") == {
        "a": "n/a",
        "b": "0.800",
        "difference": "n/a",
    }
    assert difference_of(html, "total_p50_ms")["difference"] == "+100"
    accuracy_row = re.search(r'data-key="accuracy">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "verdict-better" in accuracy_row
    latency_row = re.search(r'data-key="total_p50_ms">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "verdict-worse" in latency_row


def comparison_notes(client, a, b) -> list[str]:
    html = client.get(compare_url(a, b)).content.decode()
    return re.findall(r'class="warning alarm comparison-note">([^<]*)<', html)


def test_the_comparison_warns_when_the_gold_set_file_or_k_differ(client):
    def run(digest: str, k: int):
        return stored_run(gold_set="tiny", gold_set_digest=digest, metrics={"cases": 0, "k": k})

    client.force_login(actor("auditor"))
    same, also_same = run("a" * 64, 5), run("a" * 64, 5)
    assert comparison_notes(client, same, also_same) == []
    changed_file = run("b" * 64, 5)
    notes = comparison_notes(client, same, changed_file)
    assert len(notes) == 1 and "The gold set file changed between the runs" in notes[0]
    other_k = run("a" * 64, 10)
    assert comparison_notes(client, same, other_k) == [
        "Retrieval hit@k counted different k (A: 5, B: 10)."
    ]


def test_each_comparison_writes_an_access_log_entry_naming_each_run(client, before_after):
    a, b = before_after
    auditor = actor("auditor")
    client.force_login(auditor)
    client.get(compare_url(a, b))
    entries = AccessLogEntry.objects.order_by("id")
    assert [(e.actor_id, e.action, e.target_type) for e in entries] == [
        (auditor.pk, Action.AUDIT_READ, "evaluation_run")
    ] * 2
    assert [e.target_id for e in entries] == [a.pk, b.pk]
    assert f"compared with #{b.pk}" in entries[0].target_label
    assert entries[1].after == {"compared": [a.pk, b.pk]}


# Unknown and missing ids


def test_an_unknown_run_is_a_404_naming_it_and_nothing_is_logged(client, before_after):
    a, _b = before_after
    missing = EvaluationRun.objects.order_by("-pk").first().pk + 1000
    client.force_login(actor("auditor"))

    response = client.get(reverse("admin:evaluation-run", args=[missing]))
    assert response.status_code == 404
    assert f"No evaluation run #{missing}." in response.content.decode()
    response = client.get(reverse("admin:evaluation-compare"), {"a": a.pk, "b": missing})
    assert response.status_code == 404
    assert f"No evaluation run #{missing}." in response.content.decode()
    assert not AccessLogEntry.objects.exists()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "This field is required."),
        ({"a": "1"}, "Run B (after): This field is required."),
        ({"a": "one", "b": "2"}, "Run A (before): Enter a whole number."),
        ({"a": "0", "b": "2"}, "greater than or equal to 1"),
        ({"a": "7", "b": "7"}, "Pick two different runs."),
    ],
    ids=["nothing", "only a", "not a number", "zero", "the same run"],
)
def test_missing_or_invalid_ids_are_a_400_that_says_what_is_wrong(client, query, message):
    client.force_login(actor("auditor"))
    response = client.get(reverse("admin:evaluation-compare"), query)
    assert response.status_code == 400
    errors = re.search(r'id="compare-errors">(.*?)</div>', response.content.decode(), re.DOTALL)
    assert message in errors.group(1)
    assert not AccessLogEntry.objects.exists()
