import socket
import subprocess
import sys
import time

import pytest

from inference.client import InferenceClient, InferenceUnavailable, default_base_url


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


def test_base_url_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("INFERENCE_URL", raising=False)
    monkeypatch.setenv("INFERENCE_PORT", "9123")
    assert default_base_url() == "http://127.0.0.1:9123"
    monkeypatch.setenv("INFERENCE_URL", "http://gpu-1:8000/v1/")
    assert default_base_url() == "http://gpu-1:8000"


def test_the_web_side_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import inference.client, inference.grounding, inference.prompts, inference.services\n"
        "from inference.prompts import token_counter\n"
        "token_counter().count('hello')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
