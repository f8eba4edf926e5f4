"""The engine's continuous batching on the real default model, in this process.

The reference is transformers' own ``generate`` on each prompt alone (its sliding-window
cache, no padding, no prefix reuse): whatever the scheduler does to serve requests together
(arrivals mid-decode, a left-padded shared cache, the window applied by masks, prefixes
reused from earlier prompts) must not change a single greedy token.
"""

import os
import time

import pytest

from chatbot.answering.prompts import Source, build_prompt

pytestmark = pytest.mark.model

NEW_TOKENS = 24
FACTS = [
    "Hotel costs are reimbursed up to {a} EUR per night in category {i} cities.",
    "Travel must be booked through the corporate portal at least {b} days in advance.",
    "Receipts are submitted in the expense tool within {b} days of the trip's end.",
    "The torque for the main landing gear axle nut is {a} Nm on aircraft {i}.",
]


@pytest.fixture(scope="module")
def engine(model_dir):
    from inference.engine import Engine

    # On a GPU (bench/gpu_check.sh) INFERENCE_DTYPE picks float32 or bfloat16.
    engine = Engine(
        model_dir=model_dir,
        max_batch_size=8,
        prefix_cache_size=4,
        draft_tokens=8,
        dtype=os.environ.get("INFERENCE_DTYPE", ""),
    )
    engine.load()
    yield engine
    engine.stop()


def answer_prompt(counter, *, sentences: int, question: str) -> str:
    sources = [
        Source(
            index=i,
            title=f"Policy part {i}",
            text=" ".join(
                FACTS[(i + j) % len(FACTS)].format(a=90 + 7 * i + j, b=3 + j, i=i)
                for j in range(sentences)
            ),
        )
        for i in range(1, 4)
    ]
    prompt = build_prompt(
        question=question, sources=sources, kind="base", counter=counter, budget_tokens=4096
    )
    return prompt.text


def alone(engine, prompt_ids: list[int]) -> list[int]:
    import torch

    output = engine.model.generate(
        torch.tensor([prompt_ids], device=engine.device),
        attention_mask=torch.ones((1, len(prompt_ids)), dtype=torch.long, device=engine.device),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    tokens = output[0, len(prompt_ids) :].tolist()
    end = next((i for i, t in enumerate(tokens) if t in engine.eos_ids), len(tokens))
    return tokens[:end]


def wait_for_tokens(job, count: int, *, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(job.token_ids) < count and not job.done:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def reference(engine, counter):
    """Prompts of different lengths (two past the 512-token window) and the tokens
    transformers' generate gives each alone."""
    prompts = [
        answer_prompt(counter, sentences=14, question="What is the torque on aircraft 3?"),
        answer_prompt(counter, sentences=1, question="How much is a hotel in a category 2 city?"),
        answer_prompt(counter, sentences=26, question="How many days in advance is travel booked?"),
        "Monday, Tuesday, Wednesday,",
        answer_prompt(counter, sentences=6, question="When are receipts due?"),
    ]
    prompt_ids = [engine.encode_prompt(p) for p in prompts]
    lengths = [len(ids) for ids in prompt_ids]
    assert sum(n > 1000 for n in lengths) >= 2 and min(lengths) < 16, lengths
    expected = [alone(engine, ids) for ids in prompt_ids]
    assert sum(map(len, expected)) >= 3 * NEW_TOKENS  # not a comparison of empty answers
    return prompt_ids, expected


def draft_tokens(outcome: str) -> float:
    from inference.engine import DRAFT_TOKENS

    return DRAFT_TOKENS.labels(outcome)._value.get()


def test_tokens_under_concurrent_load_equal_each_prompt_alone(engine, reference):
    prompt_ids, expected = reference
    # Each request arrives while the ones before it are decoding.
    jobs = []
    for ids in prompt_ids:
        jobs.append(engine.submit(ids, max_tokens=NEW_TOKENS))
        wait_for_tokens(jobs[-1], 3)
    overlapped = [not job.done for job in jobs[:-1]]
    for job in jobs:
        list(job.events())

    assert [job.token_ids for job in jobs] == expected
    assert sum(overlapped) >= 3  # the requests really were decoded together
    # Every answer prompt after the first starts with the same instructions and examples.
    reused = [job.reused_prefix_tokens for job in jobs]
    assert reused[0] == 0 and all(n > 200 for n in reused[1:3] + reused[4:]), reused


def test_prompt_lookup_decoding_alone_gives_the_tokens_of_one_step_at_a_time(engine, reference):
    prompt_ids, expected = reference
    accepted, rejected = draft_tokens("accepted"), draft_tokens("rejected")

    produced = []
    for ids in prompt_ids:
        job = engine.submit(ids, max_tokens=NEW_TOKENS)
        list(job.events())
        produced.append(job.token_ids)

    assert produced == expected
    # Drafts were checked, and both kept and thrown away: the path under test really ran.
    assert draft_tokens("accepted") - accepted >= NEW_TOKENS
    assert draft_tokens("rejected") > rejected


def test_a_request_starts_while_another_is_decoding_and_cancelled_rows_leave(engine):
    endless = engine.encode_prompt("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,")
    long_job = engine.submit(endless, max_tokens=400)
    wait_for_tokens(long_job, 5)

    late = engine.submit(engine.encode_prompt("The capital of France is"), max_tokens=4)
    assert late.next_event(timeout=60) is not None  # its first text, long before...
    assert not long_job.done  # ...the running request ends
    list(late.events())

    long_job.cancelled.set()
    stopped_at = len(long_job.token_ids)
    follower = engine.submit(engine.encode_prompt("Monday, Tuesday,"), max_tokens=12)
    list(follower.events())
    assert len(long_job.token_ids) <= stopped_at + 1  # no decode steps after it left
    assert follower.token_ids and follower.finish_reason in ("stop", "length")
    assert long_job.done


def test_the_shortlist_head_chooses_the_float32_argmax_and_falls_back_when_unproven(
    engine, reference
):
    import torch
    import torch.nn.functional as F

    from inference.engine import HEAD_FULL_ROWS, GreedyHead

    if engine.device != "cpu":
        pytest.skip("the bfloat16 shortlist is the CPU float32 path")
    prompt_ids, _expected = reference
    ids = prompt_ids[0][:400]
    with torch.inference_mode():
        hidden = engine._forward(input_ids=torch.tensor([ids]), past_key_values=None)[0]
        weight = engine.model.get_output_embeddings().weight
        exact = F.linear(hidden, weight).argmax(dim=-1).tolist()  # every position's next token

        assert engine._head(hidden) == exact
        # A bound nothing can clear: every row is scored in full, and still right.
        doubtful = GreedyHead(weight, shortlist=4)
        doubtful.ERROR = 1e6
        before = HEAD_FULL_ROWS._value.get()
        assert doubtful(hidden) == exact
        assert HEAD_FULL_ROWS._value.get() - before == len(ids)
