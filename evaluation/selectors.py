"""Reads of stored evaluation runs, for the admin console.

A run keeps the passages retrieval returned to every gold case's asker, so it holds text of
every role's documents: each read here needs the audit permission, like reading other users'
conversations, and each read of a run's cases (its detail, a comparison) is written to the
access log naming the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404

from accounts import policy
from accounts.access_log import Action, log_access
from accounts.policy import Actor, ManagementDenied
from evaluation.metrics import COLUMNS
from evaluation.models import EvaluationCase, EvaluationRun, FinetuneRun

READ_TARGET = "evaluation_run"

# Which way a figure should move; the others (cases, token sums) are neither good nor bad.
HIGHER_IS_BETTER = frozenset(
    {
        "hit_at_k",
        "mrr",
        "accuracy",
        "model_accuracy",
        "citation_precision",
        "citation_recall",
        "grounded_rate",
        "not_found_correct",
    }
)
LOWER_IS_BETTER = frozenset(
    {
        "fallback_rate",
        "quote_rate",
        "wrong_answers",
        "answerable_not_found",
        "leaks",
        "errors",
        "first_token_p50_ms",
        "first_token_p95_ms",
        "total_p50_ms",
        "total_p95_ms",
    }
)


def evaluation_check_read(actor: Actor) -> None:
    """Refuse (ManagementDenied, 403) an actor who may not read evaluation runs."""
    if not policy.can_audit(actor):
        raise ManagementDenied(
            "Evaluation runs hold passages of every role's documents: reading them needs "
            "the audit permission."
        )


def evaluation_run_list(*, actor: Actor) -> QuerySet[EvaluationRun]:
    """Every run, newest first (their settings and figures, not their cases)."""
    evaluation_check_read(actor)
    return EvaluationRun.objects.order_by("-started_at", "-id")


# One run


@dataclass(frozen=True)
class RunReport:
    run: EvaluationRun
    # Each case shows the expected facts it stored when the run was made, not the gold set
    # file as it is now: a run shows what it was scored against.
    failures: tuple[EvaluationCase, ...]  # problems non-empty, in gold-set order
    passes: tuple[EvaluationCase, ...]


def evaluation_run_for_audit(*, actor: Actor, run_id: int) -> RunReport:
    """A run with its cases, failures first. Needs the audit permission (ManagementDenied),
    answers Http404 for an unknown id, and logs every read."""
    evaluation_check_read(actor)
    run = EvaluationRun.objects.filter(pk=run_id).first()
    if run is None:
        raise Http404(f"No evaluation run #{run_id}.")
    log_access(
        actor=actor,
        action=Action.AUDIT_READ,
        target_type=READ_TARGET,
        target_id=run.pk,
        target_label=f"evaluation run {run}",
    )
    cases = _cases(run)
    return RunReport(
        run=run,
        failures=tuple(case for case in cases if not case.passed),
        passes=tuple(case for case in cases if case.passed),
    )


def _cases(run: EvaluationRun) -> list[EvaluationCase]:
    return list(EvaluationCase.objects.filter(run=run).order_by("position", "id"))


# Two runs


@dataclass(frozen=True)
class FigureChange:
    key: str
    label: str
    spec: str  # format spec, from metrics.COLUMNS
    a: float | int | None
    b: float | int | None

    @property
    def difference(self) -> float | int | None:
        """B minus A, where both runs counted the figure."""
        if isinstance(self.a, int | float) and isinstance(self.b, int | float):
            return self.b - self.a
        return None

    @property
    def verdict(self) -> str:
        """ "better", "worse", or "" (no change, not comparable, or neither good nor bad)."""
        difference = self.difference
        if not difference:
            return ""
        if self.key in HIGHER_IS_BETTER:
            return "better" if difference > 0 else "worse"
        if self.key in LOWER_IS_BETTER:
            return "better" if difference < 0 else "worse"
        return ""


@dataclass(frozen=True)
class CasePair:
    case_id: str
    a: EvaluationCase
    b: EvaluationCase


@dataclass(frozen=True)
class RunComparison:
    a: EvaluationRun
    b: EvaluationRun
    figures: tuple[FigureChange, ...]
    got_better: tuple[CasePair, ...]  # failed in A, passes in B
    got_worse: tuple[CasePair, ...]  # passed in A, fails in B
    changed_answer: tuple[CasePair, ...]  # same verdict, a different answer
    still_failing: tuple[CasePair, ...]  # fails in both, with the same answer
    unchanged_passes: int  # passes in both, with the same answer
    only_in_a: tuple[EvaluationCase, ...]
    only_in_b: tuple[EvaluationCase, ...]
    notes: tuple[str, ...]  # why the two may not be like for like


def evaluation_runs_compare(*, actor: Actor, a_id: int, b_id: int) -> RunComparison:
    """Run B against run A: their figures side by side and their cases matched by case id.
    Needs the audit permission (ManagementDenied), answers Http404 naming an unknown id, and
    logs the read of each run."""
    evaluation_check_read(actor)
    runs = EvaluationRun.objects.in_bulk([a_id, b_id])
    unknown = [f"#{run_id}" for run_id in dict.fromkeys((a_id, b_id)) if run_id not in runs]
    if unknown:
        raise Http404(f"No evaluation run {' or '.join(unknown)}.")
    a, b = runs[a_id], runs[b_id]
    with transaction.atomic():
        for run, other in ((a, b), (b, a)):
            log_access(
                actor=actor,
                action=Action.AUDIT_READ,
                target_type=READ_TARGET,
                target_id=run.pk,
                target_label=f"evaluation run {run} compared with #{other.pk}",
                after={"compared": [a.pk, b.pk]},
            )
    return _compare(a, b)


def _compare(a: EvaluationRun, b: EvaluationRun) -> RunComparison:
    cases_a = {c.case_id: c for c in _cases(a)}
    cases_b = {c.case_id: c for c in _cases(b)}
    groups: dict[str, list[CasePair]] = {
        "got_better": [],
        "got_worse": [],
        "changed_answer": [],
        "still_failing": [],
    }
    unchanged_passes = 0
    for case_id, case_a in cases_a.items():
        case_b = cases_b.get(case_id)
        if case_b is None:
            continue
        pair = CasePair(case_id, case_a, case_b)
        if case_a.passed != case_b.passed:
            groups["got_better" if case_b.passed else "got_worse"].append(pair)
        elif case_a.answer != case_b.answer:
            groups["changed_answer"].append(pair)
        elif case_a.passed:
            unchanged_passes += 1
        else:
            groups["still_failing"].append(pair)
    figures = tuple(
        FigureChange(
            key,
            _label(key, label, a.metrics, b.metrics),
            spec,
            a.metrics.get(key),
            b.metrics.get(key),
        )
        for key, label, spec in COLUMNS
    )
    return RunComparison(
        a=a,
        b=b,
        figures=figures,
        **{name: tuple(pairs) for name, pairs in groups.items()},
        unchanged_passes=unchanged_passes,
        only_in_a=tuple(c for case_id, c in cases_a.items() if case_id not in cases_b),
        only_in_b=tuple(c for case_id, c in cases_b.items() if case_id not in cases_a),
        notes=_comparison_notes(a, b),
    )


def _label(key: str, label: str, *metrics: dict) -> str:
    if key == "hit_at_k":
        ks = [m.get("k") for m in metrics if m.get("k")]
        if ks and all(k == ks[0] for k in ks):
            return f"retrieval hit@{ks[0]}"
    return label


def _comparison_notes(a: EvaluationRun, b: EvaluationRun) -> tuple[str, ...]:
    notes = []
    if a.gold_set != b.gold_set:
        notes.append(
            f"The runs used different gold sets ({a.gold_set} and {b.gold_set}): only cases "
            "with the same id are matched."
        )
    elif a.gold_set_digest and b.gold_set_digest and a.gold_set_digest != b.gold_set_digest:
        notes.append(
            "The gold set file changed between the runs: a case with the same id may ask or "
            "expect something else."
        )
    k_a, k_b = a.metrics.get("k"), b.metrics.get("k")
    if k_a and k_b and k_a != k_b:
        notes.append(f"Retrieval hit@k counted different k (A: {k_a}, B: {k_b}).")
    return tuple(notes)


# Fine-tuning runs: what trained each adapter, and the evaluation runs that measured it.


@dataclass(frozen=True)
class FinetuneReport:
    run: FinetuneRun
    # Evaluation runs whose model is this adapter served on its base model, and the base
    # model's own runs (the "before"), newest first.
    adapter_runs: tuple[EvaluationRun, ...]
    base_runs: tuple[EvaluationRun, ...]


def finetune_run_list(*, actor: Actor) -> QuerySet[FinetuneRun]:
    evaluation_check_read(actor)
    return FinetuneRun.objects.order_by("-started_at", "-id")


def finetune_run_for_audit(*, actor: Actor, run_id: int) -> FinetuneReport:
    """One fine-tuning run with the evaluation runs of its adapter; Http404 if none."""
    evaluation_check_read(actor)
    run = FinetuneRun.objects.filter(pk=run_id).first()
    if run is None:
        raise Http404(f"No fine-tuning run #{run_id}.")
    adapter = f"{run.base_model}+{Path(run.out_dir).name}" if run.out_dir else ""
    runs = EvaluationRun.objects.order_by("-started_at", "-id")
    return FinetuneReport(
        run=run,
        adapter_runs=tuple(runs.filter(model=adapter)) if adapter else (),
        base_runs=tuple(runs.filter(model=run.base_model)[:20]) if run.base_model else (),
    )
