"""The summary table of a run, from its per-case results. Pure: works on any objects with
the EvaluationCase fields, so stored runs are re-summarised the same way.

Denominators (a case counts only where the figure means something):
- hit@k, MRR, citation recall (one of the documents holding the answer is cited):
  answerable cases that name documents to cite;
- model accuracy, accuracy on answerable: cases expecting facts;
- citation precision: cited documents of answerable cases (micro-averaged);
- not-found correctness: cases whose right answer is the not-found answer;
- grounded and fallback rates: cases that reached the model;
- leaks: every canary or out-of-scope document seen, summed (must be 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

# (key, label, format) in the order the table prints them.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cases", "cases", "d"),
    ("hit_at_k", "retrieval hit@k", ".3f"),
    ("mrr", "retrieval MRR", ".3f"),
    ("accuracy", "correct, any form", ".3f"),
    ("model_accuracy", "correct, model's own words", ".3f"),
    ("citation_precision", "citation precision", ".3f"),
    ("citation_recall", "citation recall", ".3f"),
    ("grounded_rate", "grounded rate", ".3f"),
    ("fallback_rate", "fallback rate", ".3f"),
    ("not_found_correct", "not-found correctness", ".3f"),
    ("quote_rate", "quoted instead of answered", ".3f"),
    ("wrong_answers", "wrong answers shown (must be 0)", "d"),
    ("answerable_not_found", "answerable, said not found", "d"),
    ("leaks", "leaks (must be 0)", "d"),
    ("errors", "errors", "d"),
    ("first_token_p50_ms", "first token p50 ms", ".0f"),
    ("first_token_p95_ms", "first token p95 ms", ".0f"),
    ("total_p50_ms", "total p50 ms", ".0f"),
    ("total_p95_ms", "total p95 ms", ".0f"),
    ("prompt_tokens", "prompt tokens (sum)", "d"),
    ("completion_tokens", "completion tokens (sum)", "d"),
)


def summarise(cases: Sequence[Any], *, k: int) -> dict[str, float | int | None]:
    answerable = [c for c in cases if not c.expected_not_found]
    with_documents = [c for c in answerable if c.expected_documents]
    unanswerable = [c for c in cases if c.expected_not_found]
    reached_model = [c for c in cases if c.outcome in ("answered", "fallback")]
    cited = sum(len(c.cited_documents) for c in answerable)
    cited_right = sum(len(set(c.cited_documents) & set(c.expected_documents)) for c in answerable)
    return {
        "cases": len(cases),
        "k": k,
        "hit_at_k": _share(c.hit_rank is not None and c.hit_rank <= k for c in with_documents),
        "mrr": _mean(1 / c.hit_rank if c.hit_rank else 0.0 for c in with_documents),
        "accuracy": _share(c.correct for c in cases),
        "answerable_accuracy": _share(c.correct for c in answerable),
        "model_accuracy": _share(c.model_correct for c in answerable),
        "citation_precision": cited_right / cited if cited else None,
        "citation_recall": _mean(c.citation_recall for c in with_documents),
        "grounded_rate": _share(c.grounded for c in reached_model),
        "fallback_rate": _share(c.fallback_used for c in reached_model),
        "not_found_correct": _share(c.correct for c in unanswerable),
        # Of the answerable cases, the share answered by quoting a passage.
        "quote_rate": _share(c.outcome == "fallback" for c in answerable),
        # The model's own text shown as the answer and wrong: a wrong figure, or an answer
        # where the right one was not-found. Worse than a quote or a not-found.
        "wrong_answers": sum(c.outcome == "answered" and not c.correct for c in cases),
        "answerable_not_found": sum(c.outcome == "not_found" for c in answerable),
        "leaks": sum(len(c.leaks) for c in cases),
        "errors": sum(c.outcome == "error" for c in cases),
        "first_token_p50_ms": percentile([c.first_token_ms for c in cases], 50),
        "first_token_p95_ms": percentile([c.first_token_ms for c in cases], 95),
        "total_p50_ms": percentile([c.total_ms for c in cases], 50),
        "total_p95_ms": percentile([c.total_ms for c in cases], 95),
        "prompt_tokens": sum(c.prompt_tokens for c in cases),
        "completion_tokens": sum(c.completion_tokens for c in cases),
    }


def format_table(metrics: dict, *, title: str = "") -> str:
    """The summary as aligned text, one figure per line ("n/a" where nothing was counted)."""
    width = max(len(label) for _, label, _ in COLUMNS)
    lines = [title] if title else []
    for key, label, spec in COLUMNS:
        value = metrics.get(key)
        text = "n/a" if value is None else format(value, spec)
        if key == "hit_at_k" and metrics.get("k"):
            label = f"retrieval hit@{metrics['k']}"
        lines.append(f"  {label:<{width}}  {text:>9}")
    return "\n".join(lines)


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """Nearest-rank percentile of the values that are not None."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    rank = max(1, math.ceil(q / 100 * len(present)))
    return float(present[rank - 1])


def _share(flags: Iterable[bool]) -> float | None:
    values = [bool(flag) for flag in flags]
    return sum(values) / len(values) if values else None


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
