"""Running a gold set through the real answer path and storing what happened.

Each case goes through chatbot.services.answer_events, the code the chat API, the web chat,
Slack and `ask` run: retrieval within the asker's scope, the model server, the grounding
check. Nothing is stored in anyone's conversations or the answer audit: a run is an
operator's measurement, kept as an EvaluationRun with its per-case results.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.selectors import (
    Scope,
    role_ids_held_unchecked,
    role_list,
    role_set_scope,
    user_scope,
)
from chatbot.answering.compose import Answer, AnswerEvent, elapsed_ms
from chatbot.answering.grounding import is_dont_know
from chatbot.answering.prompts import QuestionTooLong, Turn
from chatbot.services import answer_events
from evaluation import holdout
from evaluation.gold import GoldCase, GoldSet
from evaluation.metrics import summarise
from evaluation.models import EvaluationCase, EvaluationRun
from inference.client import InferenceUnavailable
from knowledge import demo
from knowledge.selectors import document_names_and_roles_unchecked

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSAGE_CHARS = 1200  # of each retrieved passage kept with a case
# The settings that shape an answer, recorded with every run.
RECORDED_SETTINGS = (
    "CHAT_RETRIEVAL_K",
    "ANSWER_MIN_SIMILARITY",
    "ANSWER_EVIDENCE_CHARS",
    "ANSWER_MAX_SOURCES",
    "ANSWER_BEST_SOURCE_LAST",
    "INFERENCE_PROMPT_BUDGET",
    "INFERENCE_URL",
    "INFERENCE_MODEL_NAME",
    "INFERENCE_MODEL_KIND",
    "INFERENCE_MODEL",
    "INFERENCE_EXTRA_BODY",
    "RETRIEVAL_EXACT_THRESHOLD",
)
# The workspaces the shipped sets ask in, and the command that loads each.
WORKSPACES = (("seed_demo", demo), ("seed_holdout", holdout))


@dataclass(frozen=True)
class _Outcome:
    answer: Answer | None
    streamed: str
    first_token_ms: int | None
    total_ms: int
    hits: list
    error: str = ""


def evaluation_run(
    *,
    gold_set: GoldSet,
    label: str = "",
    case_ids: Iterable[str] = (),
    limit: int | None = None,
    progress: Callable[[EvaluationCase], None] | None = None,
) -> EvaluationRun:
    """Run the set's cases (those named in ``case_ids``, else all; at most ``limit``) and
    store the run. ``progress`` is called after each case."""
    wanted = set(case_ids)
    unknown = wanted - {case.id for case in gold_set.cases}
    if unknown:
        raise LookupError(f"No case {', '.join(sorted(unknown))} in the set {gold_set.name!r}.")
    cases = [case for case in gold_set.cases if not wanted or case.id in wanted]
    if limit is not None:
        cases = cases[: max(0, limit)]
    _check_workspace_loaded(gold_set=gold_set, cases=cases)
    run = EvaluationRun.objects.create(
        label=label,
        gold_set=gold_set.name,
        gold_set_digest=gold_set.digest,
        revision=code_revision(),
        settings=_recorded_settings(k=gold_set.k),
        case_count=len(cases),
    )
    results: list[EvaluationCase] = []
    try:
        for position, case in enumerate(cases, start=1):
            result = _evaluate_case(run=run, case=case, position=position)
            result.save()
            results.append(result)
            if progress is not None:
                progress(result)
    except BaseException as exc:  # KeyboardInterrupt included: keep what was measured
        run.status, run.error = EvaluationRun.Status.FAILED, f"{type(exc).__name__}: {exc}"
        _finish(run, results, k=gold_set.k)
        raise
    run.status = EvaluationRun.Status.FINISHED
    _finish(run, results, k=gold_set.k)
    return run


def _check_workspace_loaded(*, gold_set: GoldSet, cases: list[GoldCase]) -> None:
    """LookupError naming the command to run when the cases ask as users or roles of a
    known workspace that is not loaded: a clear error, not a run of errored cases."""
    usernames = {case.user for case in cases if case.user}
    role_names = {name for case in cases for name in case.roles}
    users = get_user_model().objects.filter(username__in=usernames)
    missing = usernames - set(users.values_list("username", flat=True))
    missing |= role_names - set(
        role_list().filter(name__in=role_names).values_list("name", flat=True)
    )
    for command, workspace in WORKSPACES:
        theirs = {spec["username"] for spec in workspace.USERS} | set(workspace.role_names())
        if absent := sorted(missing & theirs):
            raise LookupError(
                f"The set {gold_set.name!r} asks in the {workspace.COMPANY} workspace, which is "
                f"not loaded here (no {', '.join(map(repr, absent[:3]))}"
                f"{', ...' if len(absent) > 3 else ''}): run `python manage.py {command}` "
                "and let its documents finish ingesting, then evaluate again."
            )


def _finish(run: EvaluationRun, results: list[EvaluationCase], *, k: int) -> None:
    run.metrics = summarise(results, k=k)
    run.model = next((r.model for r in results if getattr(r, "model", "")), run.model)
    run.finished_at = timezone.now()
    run.save()


def _evaluate_case(*, run: EvaluationRun, case: GoldCase, position: int) -> EvaluationCase:
    result = EvaluationCase(
        run=run,
        position=position,
        case_id=case.id,
        question=case.question,
        asker=case.asker,
        tags=list(case.tags),
        expected_not_found=case.not_found,
        expected_documents=list(case.cite),
        expected_facts=[*case.any_of, *([f"matches /{case.regex}/"] if case.regex else [])],
    )
    try:
        scope = case_scope(case)
    except LookupError as exc:
        return _errored(result, str(exc))
    outcome = _ask(scope=scope, case=case)
    files = document_names_and_roles_unchecked(
        document_ids={hit.document_id for hit in outcome.hits}
        | {c.document_id for c in (outcome.answer.citations if outcome.answer else [])}
    )
    result.retrieved = [
        {
            "rank": rank,
            "document_id": hit.document_id,
            "document": files.get(hit.document_id, ("", frozenset()))[0],
            "title": hit.title,
            "chunk_id": hit.chunk_id,
            "score": round(float(hit.score), 5),
            "text": hit.text[:PASSAGE_CHARS],
        }
        for rank, hit in enumerate(outcome.hits, start=1)
    ]
    result.hit_rank = next(
        (row["rank"] for row in result.retrieved if row["document"] in case.cite), None
    )
    result.first_token_ms = outcome.first_token_ms
    result.total_ms = outcome.total_ms
    result.leaks = _leaks(case=case, outcome=outcome, files=files)
    if outcome.error:
        _errored(result, outcome.error)
        result.problems = [*result.problems, *_leak_problems(result.leaks)]
        return result
    answer = outcome.answer
    result.model = answer.model  # not stored: summarised into the run
    result.answer = answer.text
    result.draft = answer.draft
    result.check_reason = answer.check[:300]
    result.prompt_tokens = answer.prompt_tokens
    result.completion_tokens = answer.completion_tokens
    result.fallback_used = answer.fallback_used
    result.grounded = answer.grounded
    result.cited_documents = _unique(
        files.get(c.document_id, ("", frozenset()))[0] for c in answer.citations
    )
    said_not_found = _is_not_found(answer)
    if said_not_found:
        result.outcome = EvaluationCase.Outcome.NOT_FOUND
    elif answer.fallback_used:
        result.outcome = EvaluationCase.Outcome.FALLBACK
    else:
        result.outcome = EvaluationCase.Outcome.ANSWERED
    if case.not_found:
        result.correct = said_not_found and not result.leaks
    else:
        result.correct = not said_not_found and case.facts_in(answer.text)
    result.model_correct = result.correct and result.outcome == EvaluationCase.Outcome.ANSWERED
    cited, expected = set(result.cited_documents), set(case.cite)
    if cited and expected:
        result.citation_precision = len(cited & expected) / len(cited)
    if expected:  # each expected document holds the answer: citing one of them is enough
        result.citation_recall = 1.0 if cited & expected else 0.0
    result.problems = _problems(result, case=case, k=int(run.settings.get("k", 5)))
    return result


def _ask(*, scope: Scope, case: GoldCase) -> _Outcome:
    started = time.monotonic()
    history = [Turn(role, content) for role, content in case.history]
    hits: list = []
    streamed: list[str] = []
    first_token_ms = None
    answer = None
    try:
        hits, events = answer_events(
            scope=scope, question=case.question, history=history, started=started
        )
        for event in events:
            if isinstance(event, AnswerEvent):
                answer = event.answer
            else:
                if first_token_ms is None:
                    first_token_ms = elapsed_ms(started)
                streamed.append(event.text)
    except (InferenceUnavailable, QuestionTooLong) as exc:
        return _Outcome(
            None, "".join(streamed), first_token_ms, elapsed_ms(started), hits, str(exc)
        )
    return _Outcome(answer, "".join(streamed), first_token_ms, elapsed_ms(started), hits)


def case_scope(case: GoldCase) -> Scope:
    """Whom a gold case asks as: a bare set of roles, or the named user's roles."""
    if case.roles:
        return role_set_scope(role_names=case.roles)
    user = get_user_model().objects.filter(username=case.user).first()
    if user is None:
        raise LookupError(f"No user named {case.user!r}: load the workspace the set is for.")
    return user_scope(user=user)


def _is_not_found(answer: Answer) -> bool:
    return answer.not_found or (not answer.citations and is_dont_know(answer.text))


def _leaks(*, case: GoldCase, outcome: _Outcome, files: dict) -> list[str]:
    """What the asker could read that lies outside their roles: a canary of the case in
    anything shown (streamed text, answer, citations), or a retrieved or cited passage of a
    document none of their roles may see (checked against the document's roles as stored,
    independently of the retrieval SQL)."""
    shown = [outcome.streamed]
    if outcome.answer is not None:
        shown.append(outcome.answer.text)
        shown.extend(f"{c.title} {c.snippet}" for c in outcome.answer.citations)
    leaks = [f"canary {canary!r}" for canary in case.leaks_in("\n".join(shown))]
    # Not the scope's roles: a bug that widened the scope must not widen this check too.
    allowed = role_ids_held_unchecked(username=case.user, role_names=case.roles)
    seen_documents = {hit.document_id for hit in outcome.hits}
    if outcome.answer is not None:
        seen_documents |= {c.document_id for c in outcome.answer.citations}
    for document_id in sorted(seen_documents):
        filename, roles = files.get(document_id, ("", frozenset()))
        if not roles & allowed:
            leaks.append(f"document {filename or document_id} is outside the asker's roles")
    return leaks


def _leak_problems(leaks: list[str]) -> list[str]:
    return [f"leak: {leak}" for leak in leaks]


def _problems(result: EvaluationCase, *, case: GoldCase, k: int) -> list[str]:
    problems = _leak_problems(result.leaks)
    if case.not_found:
        if result.outcome != EvaluationCase.Outcome.NOT_FOUND:
            problems.append("expected the not-found answer, got an answer")
        return problems
    if result.outcome == EvaluationCase.Outcome.NOT_FOUND:
        problems.append("answered not-found, but the answer is in the asker's documents")
    elif not result.correct:
        problems.append("the expected facts are not in the answer")
    if result.outcome == EvaluationCase.Outcome.FALLBACK:
        problems.append(
            "the model's answer failed the grounding check"
            + (f" ({result.check_reason})" if result.check_reason else "")
            + ": a passage was quoted"
        )
    if case.cite:
        if result.hit_rank is None or result.hit_rank > k:
            problems.append(f"retrieval did not find {' or '.join(case.cite)} in the top {k}")
        wrong = [d for d in result.cited_documents if d not in case.cite]
        if wrong:
            problems.append(f"cites {', '.join(wrong)}, which does not hold the answer")
    return problems


def _errored(result: EvaluationCase, error: str) -> EvaluationCase:
    result.outcome = EvaluationCase.Outcome.ERROR
    result.error = error
    result.problems = [f"error: {error}"]
    return result


def _recorded_settings(*, k: int) -> dict:
    recorded = {"k": k}
    for name in RECORDED_SETTINGS:
        if hasattr(settings, name):
            recorded[name] = _plain(getattr(settings, name))
    return recorded


def _plain(value):
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def code_revision() -> str:
    """The checked-out commit (with "+dirty" when the tree has changes), or "" outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))
