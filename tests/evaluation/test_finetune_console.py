"""The console's fine-tuning pages: only auditors read them, and a run shows its training
record, its loss curve, its probe and the evaluation runs of its adapter beside its base's."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from evaluation.models import EvaluationRun, FinetuneRun
from tests.evaluation.test_console import actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def finetuned():
    run = FinetuneRun.objects.create(
        name="answer-v9",
        source="synthetic",
        status=FinetuneRun.Status.FINISHED,
        finished_at=timezone.now(),
        base_model="gemma3-270m",
        out_dir="/srv/adapters/answer-v9",
        training_set_sha256="ef" * 32,
        counts={"train": {"answer": 700, "not_found": 180}},
        config={"examples": 900, "rank": 16},
        steps=880,
        best_step=750,
        minutes=41.5,
        losses=[[10, 1.2], [880, 0.1]],
        validation=[[750, 0.3]],
        probe={"canary": {"asked": 11, "repeated": 0, "examples": []}},
    )
    for model, accuracy in (("gemma3-270m+answer-v9", 0.91), ("gemma3-270m", 0.55)):
        EvaluationRun.objects.create(
            gold_set="holdout",
            status=EvaluationRun.Status.FINISHED,
            model=model,
            metrics={"model_accuracy": accuracy},
        )
    EvaluationRun.objects.create(gold_set="holdout", model="other-model", metrics={})
    return run


@pytest.mark.parametrize(
    ("who", "expected"),
    [("superuser", 200), ("auditor", 200), ("role manager", 403), ("plain staff", 403)],
)
@pytest.mark.parametrize("page", ["list", "detail"])
def test_only_auditors_read_finetune_runs(client, finetuned, who, expected, page):
    client.force_login(actor(who))
    url = (
        reverse("admin:finetune-runs")
        if page == "list"
        else reverse("admin:finetune-run", args=[finetuned.pk])
    )
    response = client.get(url)
    assert response.status_code == expected
    assert (b"answer-v9" in response.content) == (expected == 200)


def test_a_run_shows_its_record_and_its_adapters_evaluations(client, finetuned):
    client.force_login(actor("auditor"))
    page = client.get(reverse("admin:finetune-run", args=[finetuned.pk])).content.decode()
    assert "ef" * 32 in page and "880 (750)" in page
    assert 'id="finetune-curve"' in page and "<polyline" in page
    assert "gemma3-270m+answer-v9" in page and "0.910" in page  # the adapter's run
    assert "0.550" in page  # and its base model's, the "before"
    assert "other-model" not in page
    missing = client.get(reverse("admin:finetune-run", args=[finetuned.pk + 1]))
    assert missing.status_code == 404
