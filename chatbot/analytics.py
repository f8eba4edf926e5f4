"""Usage figures for the console dashboard, computed from the database.

Only counts and timings: no question text, and no document title except those of cited
documents (which an auditor may already read in the conversations that cite them).
Ingestion figures are counts only, so a document nobody may manage is never named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Aggregate, Count, FloatField, Max, Q
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_date

from chatbot.models import AnswerAudit, Feedback, MessageCitation
from knowledge.selectors import document_status_counts, document_titles_unchecked

MOST_CITED_LIMIT = 10

Outcome = AnswerAudit.Outcome


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``:
    linear interpolation between the two nearest ranks; NULL over no rows."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, *, fraction: float, **extra):
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must lie between 0 and 1")
        # A float we formatted ourselves, never user input.
        super().__init__(expression, fraction=repr(fraction), output_field=FloatField(), **extra)


@dataclass(frozen=True)
class DayCount:
    day: date
    questions: int
    answered: int
    fallback: int
    not_found: int
    other: int  # unavailable, failed or cancelled


@dataclass(frozen=True)
class CitedDocument:
    document_id: int
    title: str
    answers: int  # answers in the period citing it at least once


@dataclass(frozen=True)
class UsageSummary:
    first_day: date
    last_day: date  # inclusive
    questions: int
    questions_per_day: tuple[DayCount, ...]
    # Outcome buckets: disjoint, they add up to ``questions``.
    answered: int  # outcome answered, no fallback
    fallback: int  # fallback_used
    not_found: int
    unavailable: int
    failed: int
    cancelled: int
    feedback_up: int
    feedback_down: int
    most_cited: tuple[CitedDocument, ...]
    documents_queued: int
    documents_processing: int
    documents_failed: int  # failed now
    documents_failed_in_period: int  # failed now, and failed within the period
    latency_median_ms: float | None  # total_ms of answered questions
    latency_p95_ms: float | None
    first_token_median_ms: float | None  # first_token_ms where one was recorded
    first_token_p95_ms: float | None

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def queue_depth(self) -> int:
        return self.documents_queued + self.documents_processing

    @property
    def other(self) -> int:
        return self.unavailable + self.failed + self.cancelled

    @property
    def feedback_total(self) -> int:
        return self.feedback_up + self.feedback_down

    @property
    def feedback_ratio(self) -> float | None:
        """Share of thumbs up among the ratings given in the period (None without any)."""
        total = self.feedback_total
        return self.feedback_up / total if total else None

    def share(self, count: int) -> float | None:
        return count / self.questions if self.questions else None


def period_bounds(*, since: date | datetime, until: date | datetime):
    """(start, end, first_day, last_day): a half-open datetime range and its days.

    Dates are whole days, ``until`` included; datetimes are taken as ``[since, until)``.
    Days are those of the current time zone."""
    tz = timezone.get_current_timezone()

    def start_of(day: date) -> datetime:
        return timezone.make_aware(datetime.combine(day, time.min), tz)

    def aware(moment: datetime) -> datetime:
        return moment if timezone.is_aware(moment) else timezone.make_aware(moment, tz)

    start = aware(since) if isinstance(since, datetime) else start_of(since)
    end = aware(until) if isinstance(until, datetime) else start_of(until + timedelta(days=1))
    if end <= start:
        raise ValueError("The period ends before it starts.")
    first_day = timezone.localtime(start, tz).date()
    last_day = timezone.localtime(end - timedelta(microseconds=1), tz).date()
    return start, end, first_day, last_day


def usage_summary(*, since: date | datetime, until: date | datetime) -> UsageSummary:
    """Usage over the period (see period_bounds); ingestion queue figures are as of now."""
    start, end, first_day, last_day = period_bounds(since=since, until=until)
    audits = AnswerAudit.objects.filter(created_at__gte=start, created_at__lt=end)

    buckets = {
        "answered": Q(outcome=Outcome.ANSWERED, fallback_used=False),
        "fallback": Q(fallback_used=True),
        "not_found": Q(outcome=Outcome.NOT_FOUND, fallback_used=False),
        "unavailable": Q(outcome=Outcome.UNAVAILABLE, fallback_used=False),
        "failed": Q(outcome=Outcome.FAILED, fallback_used=False),
        "cancelled": Q(outcome=Outcome.CANCELLED, fallback_used=False),
    }
    totals = audits.aggregate(
        questions=Count("pk"),
        **{name: Count("pk", filter=q) for name, q in buckets.items()},
        latency_median_ms=PercentileCont(
            "total_ms", fraction=0.5, filter=Q(outcome=Outcome.ANSWERED)
        ),
        latency_p95_ms=PercentileCont(
            "total_ms", fraction=0.95, filter=Q(outcome=Outcome.ANSWERED)
        ),
        first_token_median_ms=PercentileCont(
            "first_token_ms", fraction=0.5, filter=Q(first_token_ms__isnull=False)
        ),
        first_token_p95_ms=PercentileCont(
            "first_token_ms", fraction=0.95, filter=Q(first_token_ms__isnull=False)
        ),
    )

    other = buckets["unavailable"] | buckets["failed"] | buckets["cancelled"]
    per_day = {
        row["day"]: row
        for row in audits.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            questions=Count("pk"),
            answered=Count("pk", filter=buckets["answered"]),
            fallback=Count("pk", filter=buckets["fallback"]),
            not_found=Count("pk", filter=buckets["not_found"]),
            other=Count("pk", filter=other),
        )
        .order_by("day")
    }
    days = []
    for offset in range((last_day - first_day).days + 1):
        day = first_day + timedelta(days=offset)
        row = per_day.get(day, {})
        days.append(
            DayCount(
                day=day,
                questions=row.get("questions", 0),
                answered=row.get("answered", 0),
                fallback=row.get("fallback", 0),
                not_found=row.get("not_found", 0),
                other=row.get("other", 0),
            )
        )

    ratings = Feedback.objects.filter(created_at__gte=start, created_at__lt=end).aggregate(
        up=Count("pk", filter=Q(rating=Feedback.Rating.UP)),
        down=Count("pk", filter=Q(rating=Feedback.Rating.DOWN)),
    )

    documents = document_status_counts(failed_since=start, failed_until=end)

    return UsageSummary(
        first_day=first_day,
        last_day=last_day,
        questions=totals["questions"],
        questions_per_day=tuple(days),
        answered=totals["answered"],
        fallback=totals["fallback"],
        not_found=totals["not_found"],
        unavailable=totals["unavailable"],
        failed=totals["failed"],
        cancelled=totals["cancelled"],
        feedback_up=ratings["up"],
        feedback_down=ratings["down"],
        most_cited=_most_cited(start=start, end=end),
        documents_queued=documents["queued"],
        documents_processing=documents["processing"],
        documents_failed=documents["failed"],
        documents_failed_in_period=documents["failed_in_period"],
        latency_median_ms=totals["latency_median_ms"],
        latency_p95_ms=totals["latency_p95_ms"],
        first_token_median_ms=totals["first_token_median_ms"],
        first_token_p95_ms=totals["first_token_p95_ms"],
    )


def _most_cited(*, start: datetime, end: datetime) -> tuple[CitedDocument, ...]:
    rows = list(
        MessageCitation.objects.filter(message__created_at__gte=start, message__created_at__lt=end)
        .values("cited_document_id")
        .annotate(answers=Count("message", distinct=True), title=Max("title"))
        .order_by("-answers", "cited_document_id")[:MOST_CITED_LIMIT]
    )
    # A document renamed since it was cited shows under its current title.
    current = document_titles_unchecked(document_ids=[row["cited_document_id"] for row in rows])
    return tuple(
        CitedDocument(
            document_id=row["cited_document_id"],
            title=current.get(row["cited_document_id"], row["title"]),
            answers=row["answers"],
        )
        for row in rows
    )


def day_or_none(raw: str) -> date | None:
    """A YYYY-MM-DD date typed into the console, or None when it is not one."""
    try:
        return parse_date(raw.strip())
    except ValueError:
        return None
