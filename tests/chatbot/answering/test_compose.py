"""Answers composed from search hits, with the real default model behind the real server."""

import pytest

from chatbot.answering.compose import (
    NOT_FOUND_ANSWER,
    AnswerEvent,
    TokenEvent,
    answer_from_hits,
    streamed_text,
)
from inference.client import InferenceClient
from tests.chatbot.answering.hits import HOTEL_HITS, Hit

pytestmark = pytest.mark.model


def test_the_user_reads_the_right_figure_cited_whether_the_model_or_the_quote_gives_it(
    inference_url, counter
):
    """One sentence holds both cities' caps. The user must read London's (180), cited to the
    travel policy: in the model's own words when its draft says 180, else quoted (a draft
    with Germany's 140 is caught: the check reads which figure the sentence gives London)."""
    client = InferenceClient(base_url=inference_url)

    events = list(
        answer_from_hits(
            question="How much is reimbursed per night for a hotel in London?",
            hits=HOTEL_HITS,
            client=client,
            counter=counter,
            kind="base",
        )
    )

    answer = events[-1].answer
    assert isinstance(events[-1], AnswerEvent)
    assert (
        "180" in answer.text and "[1]" in answer.text and "140 EUR per night for" not in answer.text
    )
    assert [(c.index, c.chunk_id, c.document_id) for c in answer.citations] == [(1, 11, 1)]
    assert "180 EUR per night in London" in answer.citations[0].snippet
    draft_right = "180" in answer.draft and "140" not in answer.draft
    assert answer.grounded == draft_right and answer.fallback_used == (not draft_right)
    streamed = "".join(e.text for e in events if isinstance(e, TokenEvent))
    if draft_right:
        assert "180" in streamed and "[none]" not in streamed
    else:
        # A draft that fails the check is never streamed; the quote replacing it is.
        assert streamed == streamed_text(answer.text) and answer.draft not in streamed
        assert "140" in answer.check
    assert answer.model == "gemma3-270m"
    assert answer.prompt_tokens > 200 and 0 < answer.completion_tokens <= 160
    assert answer.sources_shown == [11, 12]


def test_no_hits_answers_without_calling_the_model(counter):
    # A client pointing nowhere: calling the model would raise InferenceUnavailable.
    client = InferenceClient(base_url="http://127.0.0.1:9", retries=0)

    events = list(
        answer_from_hits(
            question="Who is the CEO?", hits=[], client=client, counter=counter, kind="base"
        )
    )

    assert [type(e) for e in events] == [TokenEvent, AnswerEvent]
    assert events[0].text == events[1].answer.text == NOT_FOUND_ANSWER
    events = events[1:]
    assert events[0].answer.citations == [] and events[0].answer.sources_shown == []


def test_only_unrelated_hits_answer_not_found_without_calling_the_model(counter):
    client = InferenceClient(base_url="http://127.0.0.1:9", retries=0)
    unrelated = [
        Hit(21, 3, "Canteen menu", "Soup of the day is tomato.", similarity=0.08),
        Hit(22, 3, "Canteen menu", "The canteen opens at noon.", similarity=0.12),
    ]

    events = list(
        answer_from_hits(
            question="What torque applies to the propeller bolts?",
            hits=unrelated,
            client=client,
            counter=counter,
            kind="base",
        )
    )

    assert [type(e) for e in events] == [TokenEvent, AnswerEvent]
    assert events[0].text == events[1].answer.text == NOT_FOUND_ANSWER
    events = events[1:]
