"""The fine-tuning training set: the product's own prompt, the answer in its form, hard
negatives, and never a passage a user may not read (contract item 13)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from chatbot.answering.prompts import BASE_ANSWER_PREFIX, INSTRUCTIONS
from evaluation.finetune.examples import NOT_FOUND_TARGET, build_examples
from evaluation.finetune.synthetic import synthetic_passages
from evaluation.models import FinetuneRun
from tests import factories

CANARY = "Project Nightjar budget is 7,777,777 EUR"
PUBLIC_TABLE = "Kit allowance\nItem | Allowance\nSafety boots | €95\nRain jacket | €140"


@pytest.fixture(scope="module")
def built(counter):
    return build_examples(synthetic_passages(seed=3), count=400, seed=3, counter=counter)


def test_every_fact_is_verified_against_its_passage():
    for passage in synthetic_passages(seed=5):
        assert passage.facts, passage.key
        for fact in passage.facts:
            assert fact.figure in passage.text and fact.figure in fact.answer


def test_examples_are_the_products_prompt_with_the_answer_in_its_form(built):
    assert len(built.examples) == 400
    for example in built.examples:
        assert example.prompt.startswith(INSTRUCTIONS)
        assert example.prompt.endswith(f"Answer: {BASE_ANSWER_PREFIX}")
        if example.kind == "not_found":
            assert example.target == NOT_FOUND_TARGET and example.gold_position == 0
            continue
        # "2] The figure, copied." : the citation the reader expects, then one sentence.
        assert example.target.startswith(f"{example.gold_position}] ")
        shown = _source_text(example.prompt, example.gold_position)
        assert example.figure in shown, "the target's figure is not in the gold as shown"


def test_the_set_is_hard_not_guessable(built):
    kinds = Counter(e.kind for e in built.examples)
    assert 0.12 < kinds["not_found"] / len(built.examples) < 0.28
    assert kinds["follow_up"] > 0
    positions = Counter(e.gold_position for e in built.examples if e.gold_position)
    assert {1, 2, 3} <= set(positions), "the gold must sit at every position"
    assert max(positions.values()) < 0.7 * sum(positions.values())
    # Most answered examples show a near-miss twin: the same wording, another qualifier.
    with_twin = sum(
        1
        for e in built.examples
        if e.gold_position and e.sources > 1 and _titles(e.prompt).count(_gold_title(e)) > 1
    )
    assert with_twin > 0.4 * sum(1 for e in built.examples if e.gold_position and e.sources > 1)
    # Questions are not worded like the answer sentence.
    assert sum(1 for e in built.examples if e.kind == "answer") > 200


def _source_text(prompt: str, index: int) -> str:
    tail = prompt.rsplit("\n###\n", 1)[-1]
    start = tail.index(f'<source id="{index}"')
    return tail[start : tail.index("</source>", start)]


def _titles(prompt: str) -> list[str]:
    tail = prompt.rsplit("\n###\n", 1)[-1]
    return [part.split('"', 1)[0] for part in tail.split('title="')[1:]]


def _gold_title(example) -> str:
    return _source_text(example.prompt, example.gold_position).split('title="', 1)[1].split('"')[0]


@pytest.mark.django_db
def test_a_restricted_documents_canary_never_reaches_the_training_set(tmp_path, model_dir):
    everyone, finance = factories.role("everyone"), factories.role("finance")
    factories.user(roles=[everyone], username="eve")
    factories.user(roles=[everyone, finance], username="alice")
    factories.indexed_document(title="Kit policy", text=PUBLIC_TABLE, roles=[everyone])
    factories.indexed_document(
        title="Shared memo", text="Canteen | 12:00", roles=[everyone, finance]
    )
    factories.indexed_document(
        title="Finance plan", text=f"Budgets\nProject | Budget\n{CANARY} | x", roles=[finance]
    )
    out = tmp_path / "set"
    call_command(
        "finetune", "--source", "workspace", "--roles", "everyone", "--dry-run",
        "--examples", "300", "--out", str(out),
    )  # fmt: skip
    written = (out / "train.jsonl").read_text() + (out / "validation.jsonl").read_text()
    assert "7,777,777" not in written and "Nightjar" not in written
    assert "Safety boots" in written  # the everyone-readable document was read
    run = FinetuneRun.objects.get()
    assert run.status == FinetuneRun.Status.BUILT and run.counts["workspace_documents"] == 2
    examples = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert any("€95" in e["target"] or "€140" in e["target"] for e in examples)


@pytest.mark.django_db
def test_training_on_a_role_not_everyone_holds_is_refused(tmp_path):
    everyone, finance = factories.role("everyone"), factories.role("finance")
    factories.user(roles=[everyone], username="eve")
    factories.user(roles=[everyone, finance], username="alice")
    factories.indexed_document(title="Finance plan", text=CANARY, roles=[finance])
    with pytest.raises(CommandError, match=r"'finance' \(not held by eve\)"):
        call_command(
            "finetune", "--source", "workspace", "--roles", "everyone,finance", "--dry-run",
            "--out", str(tmp_path / "set"),
        )  # fmt: skip
    assert not (tmp_path / "set").exists()
    assert not FinetuneRun.objects.exists()


@pytest.mark.django_db
def test_the_demo_and_gold_documents_are_left_out_by_default(tmp_path, model_dir):
    everyone = factories.role("everyone")
    factories.user(roles=[everyone], username="eve")
    document = factories.indexed_document(
        title="Veluna Air travel and expenses policy", text=PUBLIC_TABLE, roles=[everyone]
    )
    document.original_filename = "travel-and-expenses-policy.docx"
    document.save(update_fields=["original_filename"])
    out = tmp_path / "set"
    call_command(
        "finetune", "--source", "workspace", "--roles", "everyone", "--dry-run", "--out", str(out)
    )
    assert "Safety boots" not in (out / "train.jsonl").read_text()
    call_command(
        "finetune", "--source", "workspace", "--roles", "everyone", "--dry-run", "--out", str(out),
        "--include-evaluation-documents",
    )  # fmt: skip
    assert "Safety boots" in (out / "train.jsonl").read_text()
