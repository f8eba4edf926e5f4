"""Optional logging of a finished evaluation run to an MLflow tracking server.

Off unless MLFLOW_TRACKING_URI is set; then mlflow-skinny (requirements.txt) must be installed,
and is imported only here, only when a run is logged. The stored EvaluationRun stays the record:
a tracking server that is down or refuses the run raises MlflowLoggingError, which the caller
reports while keeping the run.

One MLflow run per evaluation run, in the experiment MLFLOW_EXPERIMENT_NAME:
- params: gold_set, gold_set_digest, label, model, revision, and each entry of run.settings as
  "settings.<key>" (text, cut to MLflow's limit);
- metrics: every number in run.metrics (None, "not counted", is left out);
- tags: evaluation.run_id, evaluation.status (and the error of a failed run);
- artifact cases.json: the per-case table (scores, timings, problems, question and answer).

Only MlflowClient is used, with the URI given explicitly: no process-wide MLflow state (tracking
URI, active run) is set. MLflow's HTTP timeout and retries are taken from the settings of the
same names while the run is logged, so a dead server fails in seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from evaluation.models import EvaluationCase, EvaluationRun, FinetuneRun

ARTIFACT_FILE = "cases.json"

# The per-case table's columns, in order (EvaluationCase fields).
CASE_FIELDS: tuple[str, ...] = (
    "position",
    "case_id",
    "asker",
    "outcome",
    "correct",
    "model_correct",
    "grounded",
    "fallback_used",
    "expected_not_found",
    "hit_rank",
    "citation_precision",
    "citation_recall",
    "expected_documents",
    "cited_documents",
    "leaks",
    "first_token_ms",
    "total_ms",
    "prompt_tokens",
    "completion_tokens",
    "problems",
    "error",
    "question",
    "answer",
)

_STATUSES = {
    EvaluationRun.Status.FINISHED: "FINISHED",
    EvaluationRun.Status.FAILED: "FAILED",
}
# MLflow's names for its HTTP client's limits, and the settings that give them here.
_HTTP_LIMITS = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)
_KEY_UNSAFE = re.compile(r"[^\w.\- ]")  # what MLflow accepts in a key, less "/" and ":"


class MlflowLoggingError(Exception):
    """The run could not be logged to MLflow (server down, refused, misconfigured). The
    stored evaluation run is unaffected."""


def mlflow_enabled() -> bool:
    return bool(settings.MLFLOW_TRACKING_URI.strip())


def evaluation_run_log_to_mlflow(*, run: EvaluationRun) -> str | None:
    """Log a finished (or failed) evaluation run and its cases to MLflow; the MLflow run id,
    or None when MLFLOW_TRACKING_URI is not set."""
    if not mlflow_enabled():
        return None
    if run.status not in _STATUSES:
        raise ValueError(f"evaluation run #{run.pk} is still {run.status}: log it once it ends")
    _mlflow()
    import requests
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import (
        MAX_ENTITY_KEY_LENGTH,
        MAX_PARAM_VAL_LENGTH,
        MAX_TAG_VAL_LENGTH,
    )

    uri = settings.MLFLOW_TRACKING_URI.strip()
    experiment_name = settings.MLFLOW_EXPERIMENT_NAME
    ended = run.finished_at or timezone.now()
    step_time = _ms(ended)
    params = [
        Param(key, _param_value(value, MAX_PARAM_VAL_LENGTH))
        for key, value in _params(run, MAX_ENTITY_KEY_LENGTH).items()
    ]
    metrics = [
        Metric(key, float(value), step_time, 0)
        for key, value in _metrics(run, MAX_ENTITY_KEY_LENGTH).items()
    ]
    tags = [
        RunTag("evaluation.run_id", str(run.pk)),
        RunTag("evaluation.status", run.status),
        RunTag("evaluation.gold_set", run.gold_set),
    ]
    if run.revision:
        tags.append(RunTag("mlflow.source.git.commit", run.revision))
    if run.error:
        tags.append(RunTag("evaluation.error", run.error[:MAX_TAG_VAL_LENGTH]))
    table = json.dumps(case_table(run), ensure_ascii=False, indent=2)

    mlflow_run_id = None
    try:
        with _http_limits():
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment_id(client, experiment_name, MlflowException)
            mlflow_run_id = client.create_run(
                experiment_id, start_time=_ms(run.started_at), run_name=str(run)
            ).info.run_id
            client.log_batch(mlflow_run_id, metrics=metrics, params=params, tags=tags)
            client.log_text(mlflow_run_id, table, ARTIFACT_FILE)
            client.set_terminated(mlflow_run_id, _STATUSES[run.status], end_time=_ms(ended))
    except (MlflowException, requests.RequestException, OSError, ImportError) as exc:
        if mlflow_run_id is not None:
            # Half logged: mark it so in MLflow if the server still answers (one try only).
            with suppress(Exception), _http_limits(MLFLOW_HTTP_REQUEST_MAX_RETRIES=0):
                client.set_terminated(mlflow_run_id, "FAILED")
        raise MlflowLoggingError(
            _redact(
                f"could not log evaluation run #{run.pk} to MLflow at {uri} (experiment "
                f"{experiment_name!r}): {_describe(exc)}",
                uri,
            )
        ) from exc
    return mlflow_run_id


def _mlflow() -> None:
    """Import MLflow's client, or say how to install it."""
    try:
        import mlflow  # noqa: F401
        import requests  # noqa: F401  (a dependency of mlflow-skinny)
    except ImportError as exc:
        raise ImproperlyConfigured(
            "MLFLOW_TRACKING_URI is set but the MLflow client is not installed: install "
            "the mlflow-skinny package (pinned in requirements.txt), e.g. "
            "pip install mlflow-skinny, or unset MLFLOW_TRACKING_URI."
        ) from exc


def finetune_run_log_to_mlflow(*, run: FinetuneRun) -> str | None:
    """Log a finished fine-tuning run to MLflow: its params (source, seed, sha256 of the
    training set, the training config), the training and validation loss per step, the
    probe's counts, and the adapter directory as the artifact "adapter". The MLflow run id,
    or None when MLFLOW_TRACKING_URI is not set."""
    if not mlflow_enabled():
        return None
    _mlflow()
    import requests
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

    uri = settings.MLFLOW_TRACKING_URI.strip()
    moment = _ms(run.finished_at or timezone.now())
    values = {
        "name": run.name,
        "source": run.source,
        "roles": run.roles,
        "seed": run.seed,
        "base_model": run.base_model,
        "revision": run.revision,
        "training_set_sha256": run.training_set_sha256,
        "counts": run.counts,
        **{f"config.{key}": value for key, value in (run.config or {}).items()},
    }
    params: dict[str, Any] = {}
    for key, value in values.items():
        _put(params, _key(key, MAX_ENTITY_KEY_LENGTH), value)
    metrics = [Metric("train_loss", float(v), moment, int(step)) for step, v in run.losses]
    metrics += [
        Metric("validation_loss", float(v), moment, int(step)) for step, v in run.validation
    ]
    metrics += [Metric("steps", float(run.steps), moment, 0)]
    metrics += [Metric("minutes", float(run.minutes), moment, 0)]
    for kind, entry in (run.probe or {}).items():
        metrics.append(
            Metric(_key(f"probe.{kind}.repeated", 250), float(entry["repeated"]), moment, 0)
        )
    mlflow_run_id = None
    try:
        with _http_limits():
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment_id(client, settings.MLFLOW_EXPERIMENT_NAME, MlflowException)
            mlflow_run_id = client.create_run(
                experiment_id, start_time=_ms(run.started_at), run_name=f"finetune {run}"
            ).info.run_id
            client.log_batch(
                mlflow_run_id,
                metrics=metrics,
                params=[Param(k, _param_value(v, MAX_PARAM_VAL_LENGTH)) for k, v in params.items()],
                tags=[
                    RunTag("finetune.run_id", str(run.pk)),
                    RunTag("finetune.status", run.status),
                ],
            )
            if run.out_dir and Path(run.out_dir).is_dir():
                client.log_artifacts(mlflow_run_id, run.out_dir, "adapter")
            client.set_terminated(mlflow_run_id, "FINISHED", end_time=moment)
    except (MlflowException, requests.RequestException, OSError) as exc:
        raise MlflowLoggingError(
            _redact(
                f"could not log finetune run #{run.pk} to MLflow at {uri}: {_describe(exc)}", uri
            )
        ) from exc
    return mlflow_run_id


def case_table(run: EvaluationRun) -> list[dict[str, Any]]:
    """The run's cases as rows of CASE_FIELDS, in their order in the gold set."""
    cases = EvaluationCase.objects.filter(run=run).order_by("position").values(*CASE_FIELDS)
    return [dict(case) for case in cases]


def _params(run: EvaluationRun, max_key: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "gold_set": run.gold_set,
        "gold_set_digest": run.gold_set_digest,
        "label": run.label,
        "model": run.model,
        "revision": run.revision,
    }
    for key, value in (run.settings or {}).items():
        _put(params, _key(f"settings.{key}", max_key), value)
    return params


def _metrics(run: EvaluationRun, max_key: int) -> dict[str, int | float]:
    metrics: dict[str, int | float] = {}
    for key, value in (run.metrics or {}).items():
        # bool is an int to Python, but a flag is not a measurement.
        if isinstance(value, int | float) and not isinstance(value, bool):
            _put(metrics, _key(str(key), max_key), value)
    return metrics


def _key(name: str, max_length: int) -> str:
    return _KEY_UNSAFE.sub("_", name)[:max_length] or "_"


def _put(entries: dict[str, Any], key: str, value: Any) -> None:
    """Add under key, or key_2, key_3, ... where cleaning made two keys the same."""
    unique, n = key, 1
    while unique in entries:
        n += 1
        unique = f"{key}_{n}"
    entries[unique] = value


def _param_value(value: Any, max_length: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:max_length]


def _experiment_id(client, name: str, mlflow_exception: type[Exception]) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except mlflow_exception:
            # Made meanwhile by another run; anything else fails again below.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise mlflow_exception(
            f"experiment {name!r} is deleted in MLflow: restore it, or set "
            "MLFLOW_EXPERIMENT_NAME to another name"
        )
    return experiment.experiment_id


@contextmanager
def _http_limits(**overrides: int) -> Iterator[None]:
    """MLflow reads its HTTP client's limits from the environment at each request: set them
    from the settings (or overrides) while logging, and put back what was there."""
    saved = {name: os.environ.get(name) for name in _HTTP_LIMITS}
    os.environ.update(
        {name: str(overrides.get(name, getattr(settings, name))) for name in _HTTP_LIMITS}
    )
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError):
        return (
            f"this tracking URI needs the Python package providing {exc.name!r}, which "
            "mlflow-skinny does not include (or use an http(s):// tracking server)"
        )
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return message.strip()


def _redact(text: str, uri: str) -> str:
    """Drop a user name and password written into the URI from a message."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return text
    host = parts.netloc.rpartition("@")[2]
    text = text.replace(uri, urlunsplit(parts._replace(netloc=host)))
    return text.replace(parts.netloc, host)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
