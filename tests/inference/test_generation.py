"""The real default model on CPU, through the real inference server process."""

import httpx
import pytest

from inference.client import InferenceClient, InferenceError

pytestmark = pytest.mark.model


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
