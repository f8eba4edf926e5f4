"""The usage dashboard of the admin console (/admin/dashboard/): figures from
chatbot.analytics, charts drawn here as inline SVG (no JavaScript, nothing fetched)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts.policy import can_audit, request_actor
from chatbot.analytics import UsageSummary, day_or_none, usage_summary

PRESET_DAYS = (7, 30, 90)
DEFAULT_DAYS = 30
MAX_DAYS = 366

# Outcome buckets in drawing order: (key, label, CSS class).
OUTCOMES = (
    ("answered", "answered", "s-answered"),
    ("fallback", "fallback answer", "s-fallback"),
    ("not_found", "not found", "s-not-found"),
    ("other", "unavailable, failed or cancelled", "s-other"),
)


@dataclass(frozen=True)
class Period:
    first_day: date
    last_day: date
    preset: int | None  # 7, 30 or 90 when chosen by preset
    error: str = ""


def period_from_query(query, *, today: date) -> Period:
    """The period asked for by ``days`` (7, 30, 90) or ``from``/``to`` (YYYY-MM-DD, both
    included); anything unreadable falls back to the last 30 days with a message."""

    def default(error: str) -> Period:
        return Period(today - timedelta(days=DEFAULT_DAYS - 1), today, DEFAULT_DAYS, error)

    raw_from = (query.get("from") or "").strip()
    raw_to = (query.get("to") or "").strip()
    if raw_from or raw_to:
        parsed = {}
        for name, raw in (("from", raw_from), ("to", raw_to)):
            if not raw:
                continue
            value = day_or_none(raw)
            if value is None:
                return default(
                    f'"{raw}" is not a date: write dates as YYYY-MM-DD, e.g. '
                    f"{today.isoformat()}. Showing the last {DEFAULT_DAYS} days instead."
                )
            parsed[name] = value
        last = parsed.get("to", today)
        first = parsed.get("from", last - timedelta(days=DEFAULT_DAYS - 1))
        if first > last:
            return default(
                f"The period starts ({first.isoformat()}) after it ends ({last.isoformat()}). "
                f"Showing the last {DEFAULT_DAYS} days instead."
            )
        if (last - first).days + 1 > MAX_DAYS:
            return default(
                f"Choose a period of at most {MAX_DAYS} days. "
                f"Showing the last {DEFAULT_DAYS} days instead."
            )
        return Period(first, last, None)

    raw_days = (query.get("days") or "").strip()
    if not raw_days:
        return default("")
    if raw_days not in {str(days) for days in PRESET_DAYS}:
        return default(
            f"Choose a period of {', '.join(map(str, PRESET_DAYS))} days, or dates. "
            f"Showing the last {DEFAULT_DAYS} days instead."
        )
    days = int(raw_days)
    return Period(today - timedelta(days=days - 1), today, days)


def dashboard_view(request, site):
    # The figures summarise other users' questions: the audit permission (superusers hold
    # it), never is_staff or a model permission.
    if not can_audit(request_actor(request)):
        raise PermissionDenied("The usage dashboard needs the audit permission.")
    period = period_from_query(request.GET, today=timezone.localdate())
    summary = usage_summary(since=period.first_day, until=period.last_day)
    context = {
        **site.each_context(request),
        "title": "Usage dashboard",
        "period": period,
        "presets": PRESET_DAYS,
        "summary": summary,
        "stats": _stats(summary),
        "daily": daily_chart(summary),
        "shares": share_bar(summary),
        "cited": cited_bars(summary),
    }
    return TemplateResponse(request, "chatbot/console/dashboard.html", context)


# Figures


def percent(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "–"


def milliseconds(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def _stat(key: str, label: str, value, shown: str, note: str = "") -> dict:
    # ``value`` is the raw figure (data-value in the page), ``shown`` what a reader sees.
    value = "" if value is None else value
    return {"key": key, "label": label, "value": value, "shown": shown, "note": note}


def _count(key: str, label: str, count: int, total: int | None = None) -> dict:
    return _stat(key, label, count, f"{count:,}", percent(count, total) if total else "")


def _ms(key: str, label: str, value: float | None) -> dict:
    return _stat(key, label, value, milliseconds(value))


def _stats(summary: UsageSummary) -> dict[str, list[dict]]:
    s = summary
    total = s.questions
    ratio = s.feedback_ratio
    per_day = f"{total / s.days:.1f} a day" if total else ""
    return {
        "Questions": [
            _stat("questions", "questions", total, f"{total:,}", per_day),
            _count("answered", "answered", s.answered, total),
            _count("fallback", "fallback answers", s.fallback, total),
            _count("not_found", "not found", s.not_found, total),
            _count("unavailable", "model unavailable", s.unavailable, total),
            _count("failed", "failed", s.failed, total),
            _count("cancelled", "cancelled", s.cancelled, total),
        ],
        "Feedback": [
            _stat(
                "feedback_ratio",
                "rated helpful",
                ratio,
                "–" if ratio is None else f"{100 * ratio:.1f}%",
                f"of {s.feedback_total:,} ratings",
            ),
            _count("feedback_up", "thumbs up", s.feedback_up),
            _count("feedback_down", "thumbs down", s.feedback_down),
        ],
        "Latency of answered questions": [
            _ms("latency_median", "median answer time", s.latency_median_ms),
            _ms("latency_p95", "95th percentile answer time", s.latency_p95_ms),
            _ms("first_token_median", "median time to first token", s.first_token_median_ms),
            _ms("first_token_p95", "95th percentile time to first token", s.first_token_p95_ms),
        ],
        "Ingestion": [
            _stat(
                "queue_depth",
                "documents waiting (now)",
                s.queue_depth,
                f"{s.queue_depth:,}",
                f"{s.documents_queued:,} queued, {s.documents_processing:,} processing",
            ),
            _count("documents_failed", "failed documents (now)", s.documents_failed),
            _count(
                "documents_failed_in_period", "failed in this period", s.documents_failed_in_period
            ),
        ],
    }


# Charts: geometry only; the template draws it, the admin's CSS variables colour it.

CHART_WIDTH = 720
CHART_HEIGHT = 220
PLOT_LEFT = 44
PLOT_RIGHT = 8
PLOT_TOP = 10
PLOT_BOTTOM = 28


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k at or above value (so the axis reads well)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def daily_chart(summary: UsageSummary) -> dict:
    days = summary.questions_per_day
    plot_width = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_height = CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
    baseline = PLOT_TOP + plot_height
    top = _nice_ceiling(max((d.questions for d in days), default=0))
    slot = plot_width / max(len(days), 1)
    bar_width = max(slot * 0.8, 1.0)
    label_every = max(1, math.ceil(len(days) / 8))
    bars = []
    for i, day in enumerate(days):
        x = PLOT_LEFT + i * slot + (slot - bar_width) / 2
        y = baseline
        segments = []
        for key, _label, css in OUTCOMES:
            count = getattr(day, key)
            if not count:
                continue
            height = plot_height * count / top
            y -= height
            segments.append({"css": css, "y": round(y, 2), "height": round(height, 2)})
        parts = ", ".join(
            f"{getattr(day, key)} {label}" for key, label, _ in OUTCOMES if getattr(day, key)
        )
        bars.append(
            {
                "day": day,
                "x": round(x, 2),
                "width": round(bar_width, 2),
                "segments": segments,
                "tooltip": f"{day.day.isoformat()}: {day.questions} questions"
                + (f" ({parts})" if parts else ""),
                "label": day.day.strftime("%d %b") if i % label_every == 0 else "",
                "label_x": round(x + bar_width / 2, 2),
            }
        )
    ticks = [
        {"value": value, "y": round(baseline - plot_height * value / top, 2)}
        for value in sorted({0, top // 2, top} if top >= 2 else {0, top})
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "plot_left": PLOT_LEFT,
        "plot_right": CHART_WIDTH - PLOT_RIGHT,
        "baseline": baseline,
        "label_y": baseline + 18,
        "bars": bars,
        "ticks": ticks,
    }


def share_bar(summary: UsageSummary) -> dict:
    total = summary.questions
    x = 0.0
    segments = []
    for key, label, css in OUTCOMES:
        count = getattr(summary, key)
        width = 100 * count / total if total else 0.0
        segments.append(
            {
                "key": key,
                "label": label,
                "css": css,
                "count": count,
                "percent": percent(count, total),
                "x": round(x, 3),
                "width": round(width, 3),
            }
        )
        x += width
    return {"total": total, "segments": segments}


def cited_bars(summary: UsageSummary) -> list[dict]:
    most = max((d.answers for d in summary.most_cited), default=0)
    return [
        {"document": d, "width": round(100 * d.answers / most, 2) if most else 0}
        for d in summary.most_cited
    ]
