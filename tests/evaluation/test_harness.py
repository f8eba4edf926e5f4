"""The evaluation harness through the real answer path (the session's model server): its
figures are the ones a reader would compute from the answers, a configuration that answers
worse scores worse, and a passage from outside the asker's roles is counted as a leak."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from accounts.selectors import role_set_scope
from evaluation import services
from evaluation.gold import parse_gold_set
from evaluation.models import EvaluationCase, EvaluationRun
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.model]

CANARY = "ZEPHYR-9931"
REVENUE = f"Quarterly revenue was 48.7 million EUR (ledger code {CANARY})."


@pytest.fixture
def world(answering):
    """Staff see the travel policy; finance also sees the revenue note (with a canary)."""
    staff, finance = factories.role("staff"), factories.role("finance")
    factories.travel_policy(roles=[staff])
    factories.indexed_document(
        title="Expense rules",
        text="Receipts must be submitted within 30 days of the trip.",
        roles=[staff],
    )
    factories.indexed_document(title="Revenue note", text=REVENUE, roles=[finance])
    factories.user(username="sam_staff", roles=[staff])
    factories.user(username="fay_finance", roles=[staff, finance])


GOLD = {
    "name": "tiny",
    "k": 3,
    "cases": [
        {
            "id": "hotel-london",
            "question": "What is the hotel cap per night in London?",
            "user": "sam_staff",
            "expect": {"any_of": ["180 EUR"]},
            "cite": ["Travel policy"],
            "never": [CANARY],
        },
        {
            "id": "receipts",
            "question": "Within how many days must receipts be submitted?",
            "user": "sam_staff",
            "expect": {"regex": r"\b30 days\b"},
            "cite": ["Expense rules"],
            "never": [CANARY],
        },
        {
            "id": "revenue-staff",
            "question": "What was the quarterly revenue?",
            "user": "sam_staff",
            "not_found": True,
            "never": [CANARY, "48.7"],
        },
        {
            "id": "revenue-finance",
            "question": "What was the quarterly revenue?",
            "roles": ["staff", "finance"],
            "expect": {"any_of": ["48.7 million"]},
            "cite": ["Revenue note"],
        },
    ],
}


def run(label: str, **kwargs) -> EvaluationRun:
    return services.evaluation_run(gold_set=parse_gold_set(GOLD), label=label, **kwargs)


def case(run: EvaluationRun, case_id: str) -> EvaluationCase:
    return run.cases.get(case_id=case_id)


def test_known_good_and_known_bad_configurations_get_different_correct_figures(world, settings):
    good = run("good")
    assert good.status == "finished" and good.case_count == 4
    # Retrieval: every answerable case found its document first.
    assert [case(good, c).hit_rank for c in ("hotel-london", "receipts", "revenue-finance")] == [
        1,
        1,
        1,
    ]
    assert good.metrics["hit_at_k"] == 1.0 and good.metrics["mrr"] == 1.0
    assert good.metrics["leaks"] == 0
    unanswerable = case(good, "revenue-staff")
    assert good.metrics["not_found_correct"] == (1.0 if unanswerable.outcome == "not_found" else 0)
    # Each figure is what the stored cases say: recomputed here by hand.
    results = list(good.cases.all())
    answerable = [r for r in results if not r.expected_not_found]
    assert good.metrics["accuracy"] == sum(r.correct for r in results) / 4
    assert good.metrics["model_accuracy"] == sum(r.model_correct for r in answerable) / 3
    for result in answerable:
        assert result.correct == (result.outcome != "not_found" and _has_fact(result))
        assert result.model_correct == (result.correct and not result.fallback_used)
    # The model answers the three answerable cases itself (greedy decoding: deterministic).
    assert [r.model_correct for r in answerable] == [True, True, True]
    assert good.metrics["wrong_answers"] == 0 and good.metrics["quote_rate"] == 0.0

    # Known-bad: a similarity floor nothing reaches, so every answer is "not found".
    settings.ANSWER_MIN_SIMILARITY = 1.01
    bad = run("bad")
    assert {r.outcome for r in bad.cases.all()} == {"not_found"}
    assert bad.metrics["accuracy"] == 0.25  # only the case whose right answer is not-found
    assert bad.metrics["model_accuracy"] == 0.0
    assert bad.metrics["not_found_correct"] == 1.0
    assert bad.metrics["fallback_rate"] is None  # nothing reached the model
    assert bad.metrics["answerable_not_found"] == 3 and bad.metrics["wrong_answers"] == 0
    assert bad.metrics["hit_at_k"] == 1.0  # retrieval itself is unchanged
    assert case(bad, "hotel-london").problems == [
        "answered not-found, but the answer is in the asker's documents"
    ]
    assert bad.settings["ANSWER_MIN_SIMILARITY"] == 1.01 and good.settings["k"] == 3


def _has_fact(result: EvaluationCase) -> bool:
    return {"hotel-london": "180", "receipts": "30", "revenue-finance": "48.7"}[
        result.case_id
    ] in result.answer


def test_a_passage_from_outside_the_askers_roles_is_counted_as_a_leak(world, monkeypatch):
    clean = run("clean", case_ids=["revenue-staff"])
    assert clean.metrics["leaks"] == 0 and case(clean, "revenue-staff").leaks == []

    # Break the first lock: the harness's asker gets every role, as a scope bug would give.
    def widened(*, user):
        return role_set_scope(role_names=["staff", "finance"])

    monkeypatch.setattr(services, "user_scope", widened)
    leaked = run("widened scope", case_ids=["revenue-staff"])
    result = case(leaked, "revenue-staff")
    assert "document Revenue note is outside the asker's roles" in result.leaks
    assert leaked.metrics["leaks"] == len(result.leaks) >= 1
    assert any(problem.startswith("leak:") for problem in result.problems)
    assert result.correct is False  # a leaked answer is never a right "not found"


def test_the_command_prints_the_table_stores_the_run_and_fails_on_a_leak(
    world, tmp_path, monkeypatch, capsys
):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(GOLD))
    call_command("evaluate", "--set", str(path), "--case", "revenue-staff", "--no-progress")
    out = capsys.readouterr().out
    stored = EvaluationRun.objects.latest("pk")
    assert f"Evaluation run #{stored.pk}: set 'tiny', 1 cases" in out
    assert "not-found correctness" in out and "leaks (must be 0)" in out
    page = f"/admin/evaluation-runs/{stored.pk}/"
    assert f"Stored as run #{stored.pk}: {page}" in out
    browser = Client()
    browser.force_login(factories.superuser())
    assert "revenue-staff" in browser.get(page).content.decode()  # the printed page is the run's
    assert stored.cases.count() == 1 and stored.status == "finished"

    monkeypatch.setattr(
        services, "user_scope", lambda *, user: role_set_scope(role_names=["staff", "finance"])
    )
    with pytest.raises(CommandError, match="leak"):
        call_command("evaluate", "--set", str(path), "--case", "revenue-staff", "--no-progress")
    assert "leak: document Revenue note" in capsys.readouterr().out


def test_unknown_sets_cases_and_users_are_clear_errors(world, tmp_path):
    with pytest.raises(CommandError, match="No gold set 'nope'"):
        call_command("evaluate", "--set", "nope")
    with pytest.raises(LookupError, match="No case missing"):
        run("x", case_ids=["missing"])
    gold = {**GOLD, "cases": [{**GOLD["cases"][0], "user": "ghost"}]}
    stored = services.evaluation_run(gold_set=parse_gold_set(gold))
    result = stored.cases.get()
    assert result.outcome == "error" and "No user named 'ghost'" in result.error
    assert stored.metrics["errors"] == 1
