"""Fixtures for the generator: the prepared default model and a real inference server.

The model is prepared once under ``$INFERENCE_TEST_DATA_DIR`` (default: the repository's
``var/``), not under the per-session DATA_DIR, so the ~1 minute conversion is not repeated
by every test session.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_READY_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from inference.prepare import DEFAULT_MODEL_DIRNAME, convert_default_gguf, ensure_converted

    if os.environ.get("INFERENCE_MODEL"):
        return Path(os.environ["INFERENCE_MODEL"]).resolve()
    data_dir = Path(os.environ.get("INFERENCE_TEST_DATA_DIR") or REPO_ROOT / "var")
    target = data_dir / "models" / DEFAULT_MODEL_DIRNAME
    return ensure_converted(target=target, convert=convert_default_gguf)


@pytest.fixture(scope="session")
def counter(model_dir):
    from inference.prompts import token_counter

    return token_counter(model_dir)


@pytest.fixture(scope="session")
def inference_url(model_dir, tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("inference") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "inference.server", "--port", str(port)]
    command += ["--model-dir", str(model_dir), "--log-level", "warning"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"inference server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"inference server not ready after {SERVER_READY_TIMEOUT_S}s")
