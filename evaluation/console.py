"""The evaluation pages of the admin console (/admin/evaluation-runs/): the runs, one run's
failing and passing cases, and two runs compared; and the fine-tuning runs
(/admin/finetune-runs/): what trained each adapter and the evaluation runs that measured it.
Reading needs the audit permission (evaluation.selectors); the views parse the query, call
one selector and format figures."""

from __future__ import annotations

import json

from django import forms
from django.core.paginator import Paginator
from django.http import Http404
from django.template.response import TemplateResponse

from accounts.policy import request_actor
from evaluation.metrics import COLUMNS
from evaluation.models import EvaluationRun
from evaluation.selectors import (
    evaluation_check_read,
    evaluation_run_for_audit,
    evaluation_run_list,
    evaluation_runs_compare,
    finetune_run_for_audit,
    finetune_run_list,
)

RUNS_PER_PAGE = 50
SPECS = {key: spec for key, _label, spec in COLUMNS}
LABELS = {key: label for key, label, _spec in COLUMNS}
# The runs list's columns: (metrics key, heading).
LIST_FIGURES = (
    ("hit_at_k", "hit@k"),
    ("accuracy", "accuracy"),
    ("model_accuracy", "model accuracy"),
    ("fallback_rate", "fallback rate"),
    ("wrong_answers", "wrong answers"),
    ("citation_precision", "citation precision"),
    ("not_found_correct", "not-found correct"),
    ("leaks", "leaks"),
)
SHOW = ("all", "failures")


def figure(value, spec: str) -> str:
    """A figure as the summary table prints it; "n/a" where nothing was counted."""
    if value is None:
        return "n/a"
    if spec == "d" and isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def difference(value, spec: str) -> str:
    if value is None:
        return "n/a"
    if not value:
        return figure(0, spec)
    return figure(value, f"+{spec}")


def summary_rows(metrics: dict) -> list[dict]:
    rows = []
    for key, label, spec in COLUMNS:
        if key == "hit_at_k" and metrics.get("k"):
            label = f"retrieval hit@{metrics['k']}"
        value = metrics.get(key)
        rows.append(
            {
                "key": key,
                "label": label,
                "shown": figure(value, spec),
                "alarm": key == "leaks" and bool(value),
            }
        )
    return rows


def _leaks(run: EvaluationRun) -> bool:
    leaks = run.metrics.get("leaks")
    return isinstance(leaks, int | float) and leaks > 0


def _context(request, site, title: str, **values) -> dict:
    return {**site.each_context(request), "title": title, **values}


def _not_found(request, site, message: str) -> TemplateResponse:
    context = _context(request, site, "Evaluation run not found", message=message)
    return TemplateResponse(request, "evaluation/console/not_found.html", context, status=404)


# Pages


def run_list_view(request, site):
    runs = evaluation_run_list(actor=request_actor(request))
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [
        {
            "run": run,
            "figures": [
                {
                    "key": key,
                    "shown": figure(run.metrics.get(key), SPECS[key]),
                    "alarm": key == "leaks" and _leaks(run),
                }
                for key, _heading in LIST_FIGURES
            ],
        }
        for run in page
    ]
    context = _context(
        request,
        site,
        "Evaluation runs",
        page=page,
        rows=rows,
        headings=[heading for _key, heading in LIST_FIGURES],
    )
    return TemplateResponse(request, "evaluation/console/run_list.html", context)


def run_detail_view(request, site, run_id: int):
    show = request.GET.get("show", "all")
    if show not in SHOW:
        show = "all"
    try:
        report = evaluation_run_for_audit(actor=request_actor(request), run_id=run_id)
    except Http404 as exc:
        return _not_found(request, site, str(exc))
    run = report.run
    context = _context(
        request,
        site,
        f"Evaluation run #{run.pk}",
        run=run,
        report=report,
        show=show,
        summary=summary_rows(run.metrics),
        settings_items=sorted(run.settings.items()) if isinstance(run.settings, dict) else [],
    )
    return TemplateResponse(request, "evaluation/console/run_detail.html", context)


class CompareForm(forms.Form):
    a = forms.IntegerField(label="Run A (before)", min_value=1)
    b = forms.IntegerField(label="Run B (after)", min_value=1)

    def clean(self):
        values = super().clean()
        if values.get("a") and values.get("a") == values.get("b"):
            raise forms.ValidationError("Pick two different runs.")
        return values


def runs_compare_view(request, site):
    actor = request_actor(request)
    # Refuse before reading the query, so a denied user learns nothing from its errors.
    evaluation_check_read(actor)
    form = CompareForm(request.GET)
    if not form.is_valid():
        context = _context(request, site, "Compare evaluation runs", form=form, comparison=None)
        return TemplateResponse(request, "evaluation/console/run_compare.html", context, status=400)
    try:
        comparison = evaluation_runs_compare(
            actor=actor, a_id=form.cleaned_data["a"], b_id=form.cleaned_data["b"]
        )
    except Http404 as exc:
        return _not_found(request, site, str(exc))
    figures = [
        {
            "key": change.key,
            "label": change.label,
            "a": figure(change.a, change.spec),
            "b": figure(change.b, change.spec),
            "difference": difference(change.difference, change.spec),
            "verdict": change.verdict,
        }
        for change in comparison.figures
    ]
    context = _context(
        request,
        site,
        f"Evaluation run #{comparison.a.pk} against #{comparison.b.pk}",
        form=form,
        comparison=comparison,
        figures=figures,
    )
    return TemplateResponse(request, "evaluation/console/run_compare.html", context)


# Fine-tuning runs

CURVE_WIDTH, CURVE_HEIGHT = 480, 140


def finetune_list_view(request, site):
    runs = finetune_run_list(actor=request_actor(request))
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    context = _context(request, site, "Fine-tuning runs", page=page, runs=list(page))
    return TemplateResponse(request, "evaluation/console/finetune_list.html", context)


def finetune_detail_view(request, site, run_id: int):
    try:
        report = finetune_run_for_audit(actor=request_actor(request), run_id=run_id)
    except Http404 as exc:
        return _not_found(request, site, str(exc))
    run = report.run
    context = _context(
        request,
        site,
        f"Fine-tuning run #{run.pk}: {run.name}",
        run=run,
        report=report,
        curve=loss_curve(run.losses, run.validation),
        config_items=sorted((run.config or {}).items()),
        probe_items=sorted((run.probe or {}).items()),
        counts=json.dumps(run.counts, indent=2, sort_keys=True),
        evaluations=[
            {"run": r, "figures": [figure(r.metrics.get(k), SPECS[k]) for k, _ in LIST_FIGURES]}
            for r in (*report.adapter_runs, *report.base_runs)
        ],
        headings=[heading for _key, heading in LIST_FIGURES],
    )
    return TemplateResponse(request, "evaluation/console/finetune_detail.html", context)


def loss_curve(losses: list, validation: list) -> dict | None:
    """The training and validation losses as SVG polyline points (step on x, loss on y)."""
    points = [(s, v) for s, v in [*losses, *validation]]
    if not points:
        return None
    last_step = max(s for s, _ in points) or 1
    top = max(v for _, v in points) or 1.0

    def line(series: list) -> str:
        return " ".join(
            f"{CURVE_WIDTH * s / last_step:.1f},{CURVE_HEIGHT * (1 - v / top):.1f}"
            for s, v in series
        )

    return {
        "width": CURVE_WIDTH,
        "height": CURVE_HEIGHT,
        "train": line(losses),
        "validation": line(validation),
        "top": f"{top:.3f}",
        "steps": last_step,
    }
