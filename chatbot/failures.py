"""What a user is told when an answer cannot be written: one mapping for the JSON API, the
event stream and the ``ask`` command. Never the exception text, which may name internal
hosts."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from chatbot.answering.prompts import QuestionTooLong
from config.api_errors import DATABASE_OUTAGES, DATABASE_UNAVAILABLE
from inference.client import InferenceUnavailable

MODEL_UNAVAILABLE = (
    "The language model is not available right now, so no answer could be written. "
    "Please try again in a minute."
)
ANSWER_FAILED = "Something went wrong while writing the answer. Please try again."


@dataclass(frozen=True)
class AnswerFailure:
    status: int
    code: str
    detail: str


def too_long_message() -> str:
    return (
        f"The question is too long: at most {settings.CHAT_MAX_QUESTION_CHARS} characters, "
        "and it must fit in the model's prompt."
    )


def answer_failure(exc: BaseException) -> AnswerFailure:
    if isinstance(exc, InferenceUnavailable):
        return AnswerFailure(503, "model_unavailable", MODEL_UNAVAILABLE)
    if isinstance(exc, QuestionTooLong):
        return AnswerFailure(400, "question_too_long", too_long_message())
    if isinstance(exc, DATABASE_OUTAGES):
        return AnswerFailure(503, "database_unavailable", DATABASE_UNAVAILABLE)
    return AnswerFailure(500, "failed", ANSWER_FAILED)


# The failures a user can cause or wait out; anything else is a bug and is logged as one.
EXPECTED_FAILURES = (InferenceUnavailable, QuestionTooLong)
