"""The inference server's GET /metrics (the session's real server and model)."""

import httpx
import pytest

from tests.metrics_scrape import metric_value, samples

pytestmark = pytest.mark.model


def _scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def test_a_completion_shows_in_tokens_requests_queue_wait_and_batch_metrics(inference_url):
    before = _scrape(inference_url)

    response = httpx.post(
        f"{inference_url}/v1/completions",
        json={"prompt": "The capital of France is", "max_tokens": 6},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    generated = response.json()["usage"]["completion_tokens"]
    assert generated > 0
    streamed = httpx.post(
        f"{inference_url}/v1/completions",
        json={"prompt": "Hello", "max_tokens": 3, "stream": True},
        timeout=120,
    )
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    refused = httpx.post(f"{inference_url}/v1/completions", json=["not", "an object"], timeout=30)
    assert refused.status_code == 400

    after = _scrape(inference_url)

    def grew(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert grew("chatbot_inference_tokens_generated_total") >= generated
    requests = "chatbot_inference_requests_total"
    assert grew(requests, endpoint="completions", status="200") == 2
    assert grew(requests, endpoint="completions", status="400") == 1
    assert grew("chatbot_inference_queue_wait_seconds_count") >= 2
    assert metric_value(after, "chatbot_inference_tokens_per_second") > 0
    assert samples(after, "chatbot_inference_batch_size")
