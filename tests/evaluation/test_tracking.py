"""evaluation.tracking: a finished run logged to MLflow and read back with MlflowClient.

The store is MLflow's local file store in tmp_path: mlflow-skinny has no SQL store (no
SQLAlchemy) and no tracking server (no Flask), and the file store, in maintenance mode since
MLflow 3.x, still ships and works once MLFLOW_ALLOW_FILE_STORE=true. The client, the run's
entities and the artifact upload are the same as against a server; only the transport differs
(the closed-port test covers the HTTP side's failure).
"""

import json
import os
import sys
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from evaluation.metrics import summarise
from evaluation.models import EvaluationCase, EvaluationRun
from evaluation.tracking import (
    ARTIFACT_FILE,
    MlflowLoggingError,
    evaluation_run_log_to_mlflow,
    mlflow_enabled,
)

pytestmark = pytest.mark.django_db

HTTP_LIMITS = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)


@pytest.fixture
def file_store(tmp_path, settings, monkeypatch):
    """MLflow on a file store under tmp_path; the URI it is at."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    settings.MLFLOW_TRACKING_URI = uri
    settings.MLFLOW_EXPERIMENT_NAME = "test-evaluation"
    return uri


def _run(**fields) -> EvaluationRun:
    started = timezone.now() - timedelta(minutes=3)
    fields = {"label": "baseline", "revision": "0123456789abcdef0123456789abcdef01234567", **fields}
    run = EvaluationRun.objects.create(
        gold_set="demo",
        gold_set_digest="ab" * 32,
        status=EvaluationRun.Status.FINISHED,
        finished_at=started + timedelta(minutes=2),
        model="gemma3-270m",
        settings={
            "k": 5,
            "min_similarity": 0.25,
            "inference_url": "http://127.0.0.1:8001",
            "budgets": {"prompt": 2048, "answer": 256},
            "prompt_template": "x" * 7000,  # over MLflow's 6000-character limit
        },
        **fields,
    )
    EvaluationRun.objects.filter(pk=run.pk).update(started_at=started)
    run.refresh_from_db()
    cases = [
        EvaluationCase.objects.create(
            run=run,
            position=1,
            case_id="vacation-days",
            question="How many vacation days do I get?",
            asker="alice (hr)",
            expected_documents=["handbook.pdf"],
            outcome=EvaluationCase.Outcome.ANSWERED,
            answer="25 days a year [1].",
            cited_documents=["handbook.pdf"],
            hit_rank=1,
            correct=True,
            model_correct=True,
            grounded=True,
            citation_precision=1.0,
            citation_recall=1.0,
            first_token_ms=120,
            total_ms=900,
            prompt_tokens=400,
            completion_tokens=12,
        ),
        EvaluationCase.objects.create(
            run=run,
            position=2,
            case_id="salary-bands",
            question="What are the salary bands? «übersicht»",
            asker="bob (engineering)",
            expected_documents=["bands.xlsx"],
            outcome=EvaluationCase.Outcome.FALLBACK,
            answer="From the handbook: …",
            cited_documents=["handbook.pdf"],
            hit_rank=3,
            fallback_used=True,
            citation_precision=0.0,
            citation_recall=0.0,
            leaks=["CANARY-7"],
            first_token_ms=None,
            total_ms=1500,
            problems=["wrong facts", "leaked CANARY-7"],
        ),
    ]
    run.metrics = summarise(cases, k=5)
    run.case_count = len(cases)
    run.save()
    return run


def _expected_case(case: EvaluationCase) -> dict:
    return {
        field: getattr(case, field)
        for field in (
            "position", "case_id", "asker", "outcome", "correct", "model_correct", "grounded",
            "fallback_used", "expected_not_found", "hit_rank", "citation_precision",
            "citation_recall", "expected_documents", "cited_documents", "leaks",
            "first_token_ms", "total_ms", "prompt_tokens", "completion_tokens", "problems",
            "error", "question", "answer",
        )
    }  # fmt: skip


def test_a_finished_run_is_logged_and_reads_back_the_same(file_store, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    run = _run()
    assert run.metrics["not_found_correct"] is None  # no not-found case: not counted

    mlflow_run_id = evaluation_run_log_to_mlflow(run=run)

    client = MlflowClient(tracking_uri=file_store)
    logged = client.get_run(mlflow_run_id)
    experiment = client.get_experiment(logged.info.experiment_id)
    assert experiment.name == "test-evaluation"
    assert logged.info.status == "FINISHED"
    assert logged.info.start_time == int(run.started_at.timestamp() * 1000)
    assert logged.info.end_time == int(run.finished_at.timestamp() * 1000)

    assert logged.data.params == {
        "gold_set": "demo",
        "gold_set_digest": "ab" * 32,
        "label": "baseline",
        "model": "gemma3-270m",
        "revision": run.revision,
        "settings.k": "5",
        "settings.min_similarity": "0.25",
        "settings.inference_url": "http://127.0.0.1:8001",
        "settings.budgets": '{"answer": 256, "prompt": 2048}',
        "settings.prompt_template": "x" * 6000,
    }
    expected_metrics = {
        key: float(value) for key, value in run.metrics.items() if value is not None
    }
    assert "not_found_correct" not in expected_metrics
    assert {"cases", "hit_at_k", "mrr", "leaks", "total_p95_ms"} <= expected_metrics.keys()
    assert logged.data.metrics == pytest.approx(expected_metrics)
    assert logged.data.tags["evaluation.run_id"] == str(run.pk)
    assert logged.data.tags["evaluation.status"] == "finished"
    assert logged.data.tags["mlflow.runName"] == str(run)
    assert logged.data.tags["mlflow.source.git.commit"] == run.revision

    assert [artifact.path for artifact in client.list_artifacts(mlflow_run_id)] == [ARTIFACT_FILE]
    downloaded = client.download_artifacts(mlflow_run_id, ARTIFACT_FILE, str(tmp_path / "dl"))
    with open(downloaded, encoding="utf-8") as file:
        table = json.load(file)
    assert table == [_expected_case(case) for case in run.cases.order_by("position")]
    assert table[1]["question"] == "What are the salary bands? «übersicht»"
    assert table[1]["leaks"] == ["CANARY-7"] and table[1]["first_token_ms"] is None

    # Nothing process-wide was set: no active run, no default URI pointing at the store.
    assert mlflow.active_run() is None
    assert not mlflow.tracking.is_tracking_uri_set()


def test_runs_of_one_experiment_and_a_failed_run(file_store):
    from mlflow import MlflowClient

    first = evaluation_run_log_to_mlflow(run=_run())
    failed = _run(error="inference server unreachable", label="", revision="")
    failed.status = EvaluationRun.Status.FAILED
    failed.save()
    second = evaluation_run_log_to_mlflow(run=failed)

    client = MlflowClient(tracking_uri=file_store)
    runs = {
        r.info.run_id: r for r in client.search_runs([client.get_run(first).info.experiment_id])
    }
    assert runs.keys() == {first, second}
    assert runs[second].info.status == "FAILED"
    assert runs[second].data.tags["evaluation.error"] == "inference server unreachable"
    assert runs[second].data.params["label"] == runs[second].data.params["revision"] == ""
    assert "mlflow.source.git.commit" not in runs[second].data.tags


def test_a_run_half_logged_is_marked_failed_in_mlflow(file_store, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def refuse(*args, **kwargs):
        raise MlflowException("artifact store refused the upload")

    monkeypatch.setattr(MlflowClient, "log_text", refuse)
    run = _run()
    with pytest.raises(MlflowLoggingError, match="artifact store refused the upload"):
        evaluation_run_log_to_mlflow(run=run)

    client = MlflowClient(tracking_uri=file_store)
    [logged] = client.search_runs([client.get_experiment_by_name("test-evaluation").experiment_id])
    assert logged.info.status == "FAILED"
    assert logged.data.tags["evaluation.run_id"] == str(run.pk)


def test_a_running_run_is_not_logged(file_store):
    run = _run()
    run.status = EvaluationRun.Status.RUNNING
    with pytest.raises(ValueError, match="still running"):
        evaluation_run_log_to_mlflow(run=run)


def test_unset_tracking_uri_logs_nothing(settings, monkeypatch, tmp_path):
    settings.MLFLOW_TRACKING_URI = ""
    monkeypatch.chdir(tmp_path)  # MLflow's own default store would be ./mlruns
    monkeypatch.setitem(sys.modules, "mlflow", None)  # any import of it fails

    assert not mlflow_enabled()
    assert evaluation_run_log_to_mlflow(run=_run()) is None
    assert list(tmp_path.iterdir()) == []


def test_set_tracking_uri_without_mlflow_installed_says_what_to_install(settings, monkeypatch):
    settings.MLFLOW_TRACKING_URI = "http://127.0.0.1:9"
    monkeypatch.setitem(sys.modules, "mlflow", None)

    assert mlflow_enabled()
    with pytest.raises(ImproperlyConfigured, match="mlflow-skinny"):
        evaluation_run_log_to_mlflow(run=_run())


def test_a_tracking_server_that_is_down_fails_fast_and_clearly(settings, monkeypatch):
    # Nothing listens on the discard port; the defaults of settings.py bound the retries.
    settings.MLFLOW_TRACKING_URI = "http://evaluator:s3cret@127.0.0.1:9"
    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    run = _run()

    started = time.monotonic()
    with pytest.raises(MlflowLoggingError) as failure:
        evaluation_run_log_to_mlflow(run=run)
    elapsed = time.monotonic() - started

    message = str(failure.value)
    assert elapsed < 10, f"took {elapsed:.1f} s: {message}"
    assert message.startswith(f"could not log evaluation run #{run.pk} to MLflow at ")
    assert "http://127.0.0.1:9" in message
    assert "Connection refused" in message or "Max retries exceeded" in message
    assert "s3cret" not in message and "evaluator" not in message
    # MLflow's HTTP limits are back as they were (unset), and the run is still stored.
    assert not any(name in os.environ for name in HTTP_LIMITS)
    assert EvaluationRun.objects.filter(pk=run.pk).exists()


def test_a_finetune_run_is_logged_with_its_curves_and_the_adapter(file_store, tmp_path):
    from mlflow import MlflowClient

    from evaluation.models import FinetuneRun
    from evaluation.tracking import finetune_run_log_to_mlflow

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 16}')
    (adapter / "training.json").write_text('{"name": "answer-7"}')
    run = FinetuneRun.objects.create(
        name="answer-7",
        source="synthetic",
        status=FinetuneRun.Status.FINISHED,
        finished_at=timezone.now(),
        seed=7,
        out_dir=str(adapter),
        training_set_sha256="cd" * 32,
        counts={"train": {"answer": 9, "not_found": 2}},
        config={"rank": 16, "learning_rate": 0.0002},
        steps=20,
        losses=[[10, 1.5], [20, 0.5]],
        validation=[[20, 0.75]],
        probe={"canary": {"asked": 3, "repeated": 0, "examples": []}},
    )
    logged_id = finetune_run_log_to_mlflow(run=run)
    client = MlflowClient(tracking_uri=file_store)
    logged = client.get_run(logged_id)
    assert logged.data.params["training_set_sha256"] == "cd" * 32
    assert logged.data.params["config.rank"] == "16" and logged.data.params["seed"] == "7"
    history = client.get_metric_history(logged_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(10, 1.5), (20, 0.5)]
    assert logged.data.metrics["validation_loss"] == 0.75
    assert logged.data.metrics["probe.canary.repeated"] == 0
    (folder,) = client.list_artifacts(logged_id)
    assert folder.path == "adapter"
    names = {a.path for a in client.list_artifacts(logged_id, "adapter")}
    assert names == {"adapter/adapter_config.json", "adapter/training.json"}


def test_a_wrong_answer_is_counted_apart_from_a_quote_and_a_not_found():
    from types import SimpleNamespace

    def case(outcome, correct, not_found=False):
        return SimpleNamespace(
            outcome=outcome, correct=correct, expected_not_found=not_found, hit_rank=1,
            expected_documents=["a"], cited_documents=["a"], citation_recall=1.0,
            model_correct=correct and outcome == "answered", grounded=True,
            fallback_used=outcome == "fallback", leaks=[], first_token_ms=1, total_ms=1,
            prompt_tokens=1, completion_tokens=1,
        )  # fmt: skip

    metrics = summarise(
        [
            case("answered", True),
            case("answered", False),  # the neighbouring row's figure, shown as the answer
            case("fallback", False),  # a quote of the wrong sentence: a quote, not a claim
            case("not_found", False),  # answerable, said not found
            case("answered", False, not_found=True),  # answered what it should not have
        ],
        k=5,
    )
    assert metrics["wrong_answers"] == 2
    assert metrics["quote_rate"] == 0.25 and metrics["answerable_not_found"] == 1
