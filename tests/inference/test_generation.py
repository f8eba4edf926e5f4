"""The real default model on CPU, through the real inference server process."""

from dataclasses import dataclass

import httpx
import pytest

from inference.client import InferenceClient, InferenceError
from inference.services import NOT_FOUND_ANSWER, AnswerEvent, TokenEvent, answer_from_hits

pytestmark = pytest.mark.model


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    title: str
    text: str
    heading: str = ""
    page: int | None = None
    position: int = 0
    score: float = 0.03
    similarity: float | None = None


HOTEL_HITS = [
    Hit(
        11,
        1,
        "Travel policy",
        "Hotel costs are reimbursed up to 140 EUR per night in Germany "
        "and 180 EUR per night in London. Breakfast is included.",
    ),
    Hit(12, 2, "Expense rules", "Receipts must be submitted within 30 days of the trip."),
]


def test_answer_found_in_the_sources_has_the_figure_and_a_valid_citation(inference_url, counter):
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
    assert "180" in answer.text and "[1]" in answer.text
    assert answer.grounded and not answer.fallback_used
    assert [(c.index, c.chunk_id, c.document_id) for c in answer.citations] == [(1, 11, 1)]
    assert "180 EUR per night in London" in answer.citations[0].snippet
    streamed = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert "180" in streamed and "[none]" not in streamed
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

    assert [type(e) for e in events] == [AnswerEvent]
    assert events[0].answer.text == NOT_FOUND_ANSWER
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

    assert [type(e) for e in events] == [AnswerEvent]
    assert events[0].answer.text == NOT_FOUND_ANSWER


def test_server_streams_honours_stop_strings_and_counts_tokens(inference_url):
    client = InferenceClient(base_url=inference_url)
    prompt = "Monday, Tuesday, Wednesday, Thursday,"

    stream = client.stream(prompt, max_tokens=12, stop=["Saturday"])
    deltas = list(stream)
    whole = client.generate(prompt, max_tokens=12, stop=["Saturday"])

    assert len(deltas) > 1
    assert "".join(deltas) == stream.completion.text == whole.text
    assert "Friday" in whole.text and "Saturday" not in whole.text
    assert stream.completion.prompt_tokens == whole.prompt_tokens > 5
    assert 0 < whole.completion_tokens <= 12


def test_server_rejects_bad_requests_without_retrying(inference_url):
    client = InferenceClient(base_url=inference_url)

    with pytest.raises(InferenceError, match="answered 400: only greedy decoding"):
        client.generate("Hello", max_tokens=4, temperature=0.7)
    with pytest.raises(InferenceError, match="no chat template"):
        client.chat([{"role": "user", "content": "Hello"}], max_tokens=4)
    health = httpx.get(f"{inference_url}/health").json()
    assert health == {"status": "ready", "model": "gemma3-270m"}


def test_concurrent_requests_get_the_same_answers_as_alone(inference_url):
    # Concurrent requests are decoded as one left-padded batch; padding must not change
    # what anyone receives.
    from concurrent.futures import ThreadPoolExecutor

    client = InferenceClient(base_url=inference_url)
    prompts = [
        "The capital of France is",
        "Monday, Tuesday, Wednesday, Thursday, Friday,",
        "The travel policy says that hotel costs in London are reimbursed up to",
    ]
    alone = [client.generate(p, max_tokens=8).text for p in prompts]

    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(lambda p: client.generate(p, max_tokens=8).text, prompts))

    assert together == alone
