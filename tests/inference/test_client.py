import socket
import time

import pytest

from inference.client import InferenceClient, InferenceUnavailable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_a_server_that_is_down_raises_a_clear_error_quickly():
    url = f"http://127.0.0.1:{_closed_port()}"
    client = InferenceClient(base_url=url, retries=2, backoff_s=0.05)

    started = time.monotonic()
    with pytest.raises(InferenceUnavailable, match=rf"the inference server at {url} is not"):
        client.generate("Hello", max_tokens=4)
    with pytest.raises(InferenceUnavailable, match="not reachable"):
        list(client.stream("Hello", max_tokens=4))

    assert time.monotonic() - started < 5
    assert client.is_ready() is False


def test_base_url_may_name_the_v1_prefix():
    assert InferenceClient(base_url="http://gpu-1:8000/v1/").base_url == "http://gpu-1:8000"
    assert InferenceClient(base_url="http://gpu-1:8000").base_url == "http://gpu-1:8000"
