"""A small client for the OpenAI-compatible inference API (ours, vLLM, TGI...).

Importable without Django and without torch: it only speaks HTTP. The caller passes the
server address (the web side takes it from settings). Without a configured model name the
client sends the one the server lists first at GET /v1/models, asked once per process and
server, and asked again once when the server answers 404 (restarted with another model).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from inference.model_files import MODEL_KINDS

DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 120.0
# What the client itself sets in a request body: extra_body never replaces these.
RESERVED_BODY_FIELDS = ("model", "prompt", "messages", "stream", "stream_options")


class InferenceUnavailable(RuntimeError):
    """The inference server cannot be reached, is not ready, or stopped answering."""


class InferenceError(RuntimeError):
    """The inference server rejected the request or failed while generating."""

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str = ""


@dataclass(frozen=True)
class ServerModel:
    """The first model a server lists at GET /v1/models."""

    id: str
    kind: str | None = None  # base or instruct: this project's server says, vLLM and TGI do not
    max_model_len: int | None = None  # prompt and answer tokens together (vLLM, ours)


# Base URL -> the model its server listed: asked once per process, not once per answer.
_server_models: dict[str, ServerModel] = {}


def forget_server_models() -> None:
    """Ask every server again on next use (tests; a server known to have changed)."""
    _server_models.clear()


def normalise_base_url(url: str) -> str:
    """ "http://gpu-1:8000/v1/" and "http://gpu-1:8000" name the same server."""
    return url.strip().rstrip("/").removesuffix("/v1")


class CompletionStream:
    """Iterate for text deltas; once exhausted, ``completion`` holds the whole result."""

    def __init__(self, events: Iterator[dict]):
        self._events = events
        self.completion: Completion | None = None

    def close(self) -> None:
        """Stop reading: closes the HTTP stream, which stops the generation on the server."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []
        model, finish_reason, usage = "", "", {}
        for event in self._events:
            model = event.get("model") or model
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                text = choice.get("text")
                if text is None:
                    text = (choice.get("delta") or {}).get("content")
                if text:
                    parts.append(text)
                    yield text
                finish_reason = choice.get("finish_reason") or finish_reason
        self.completion = Completion(
            text="".join(parts),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            model=model,
            finish_reason=finish_reason,
        )


class InferenceClient:
    def __init__(
        self,
        *,
        base_url: str,
        model: str = "",
        extra_body: dict | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retries: int = 2,
        backoff_s: float = 0.3,
    ):
        """``model``: the name sent with each request; empty sends the one the server lists.
        ``extra_body``: fields merged into every completion and chat request (sampling
        options, ``chat_template_kwargs``...); they replace max_tokens, stop and temperature
        but never the RESERVED_BODY_FIELDS the client sets itself."""
        self.base_url = normalise_base_url(base_url)
        self.model = model.strip()
        self.extra_body = {
            key: value
            for key, value in (extra_body or {}).items()
            if key not in RESERVED_BODY_FIELDS
        }
        self.retries = retries
        self.backoff_s = backoff_s
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)

    def generate(
        self, prompt: str, *, max_tokens: int, stop: Sequence[str] = (), temperature: float = 0
    ) -> Completion:
        body = self._body(max_tokens=max_tokens, stop=stop, temperature=temperature)
        data = self._post("/v1/completions", {**body, "prompt": prompt})
        return self._completion(data, text=data["choices"][0].get("text", ""))

    def chat(
        self,
        messages: Sequence[dict],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0,
    ) -> Completion:
        body = self._body(max_tokens=max_tokens, stop=stop, temperature=temperature)
        data = self._post("/v1/chat/completions", {**body, "messages": list(messages)})
        message = data["choices"][0].get("message") or {}
        return self._completion(data, text=message.get("content") or "")

    def stream(
        self, prompt: str, *, max_tokens: int, stop: Sequence[str] = (), temperature: float = 0
    ) -> CompletionStream:
        body = self._body(max_tokens=max_tokens, stop=stop, temperature=temperature)
        return CompletionStream(self._sse("/v1/completions", {**body, "prompt": prompt}))

    def stream_chat(
        self,
        messages: Sequence[dict],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0,
    ) -> CompletionStream:
        body = self._body(max_tokens=max_tokens, stop=stop, temperature=temperature)
        payload = {**body, "messages": list(messages)}
        return CompletionStream(self._sse("/v1/chat/completions", payload))

    def is_ready(self, *, timeout: float = 1.0) -> bool:
        """Ready, not merely listening: our server answers /health 200 only once warmed up;
        other OpenAI-compatible servers (vLLM, TGI) have /health or at least /v1/models."""
        try:
            with httpx.Client(timeout=timeout) as http:
                response = http.get(f"{self.base_url}/health")
                if response.status_code == 404:
                    response = http.get(f"{self.base_url}/v1/models")
            return response.status_code == 200
        except httpx.HTTPError:
            return False

    def server_model(self, *, refresh: bool = False) -> ServerModel:
        """What the server serves (the first entry of GET /v1/models), remembered for the
        process; ``refresh`` asks again. InferenceUnavailable when the server is down or not
        ready, InferenceError when it lists no model (or has no /v1/models)."""
        known = None if refresh else _server_models.get(self.base_url)
        if known is not None:
            return known
        with httpx.Client(timeout=self._timeout) as http:
            response = self._send(http, "/v1/models", None, stream=False)
            try:
                listing = response.json()
            except ValueError:
                listing = None
            finally:
                response.close()
        entries = listing.get("data") if isinstance(listing, dict) else None
        entry = entries[0] if isinstance(entries, list) and entries else None
        if not isinstance(entry, dict) or not entry.get("id"):
            raise InferenceError(f"the inference server at {self.base_url} lists no model")
        length = entry.get("max_model_len")
        served = ServerModel(
            id=str(entry["id"]),
            kind=entry.get("kind") if entry.get("kind") in MODEL_KINDS else None,
            max_model_len=length if isinstance(length, int) and length > 0 else None,
        )
        _server_models[self.base_url] = served
        return served

    def _body(self, *, max_tokens: int, stop: Sequence[str], temperature: float) -> dict:
        return {
            "max_tokens": max_tokens,
            "stop": list(stop) or None,
            "temperature": temperature,
            **self.extra_body,
        }

    def _completion(self, data: dict, *, text: str) -> Completion:
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            model=data.get("model", ""),
            finish_reason=data["choices"][0].get("finish_reason") or "",
        )

    def _post(self, path: str, payload: dict) -> dict:
        with httpx.Client(timeout=self._timeout) as http:
            response = self._send_for_model(http, path, {**payload, "stream": False}, stream=False)
            try:
                return response.json()
            finally:
                response.close()

    def _sse(self, path: str, payload: dict) -> Iterator[dict]:
        payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        with httpx.Client(timeout=self._timeout) as http:
            response = self._send_for_model(http, path, payload, stream=True)
            try:
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:
                        raise InferenceError(f"generation failed: {_message(event)}")
                    yield event
            except (httpx.TransportError, httpx.StreamError) as exc:
                raise self._unavailable(exc) from exc
            finally:
                response.close()

    def _send_for_model(self, http: httpx.Client, path: str, payload: dict, *, stream: bool) -> Any:
        """Send with the model name; a name asked from the server that it no longer knows
        (404: restarted with another model) is asked again, once."""
        name = self.model or self.server_model().id
        try:
            return self._send(http, path, {**payload, "model": name}, stream=stream)
        except InferenceError as exc:
            if self.model or exc.status_code != 404:
                raise
            renamed = self.server_model(refresh=True).id
            if renamed == name:
                raise
            return self._send(http, path, {**payload, "model": renamed}, stream=stream)

    def _send(self, http: httpx.Client, path: str, payload: dict | None, *, stream: bool) -> Any:
        """POST ``payload`` (GET without one), retrying only failures where the server cannot
        have started generating."""
        url = f"{self.base_url}{path}"
        method = "GET" if payload is None else "POST"
        for attempt in range(self.retries + 1):
            try:
                request = http.build_request(method, url, json=payload)
                response = http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self.retries:
                    raise self._unavailable(exc) from exc
            except httpx.TransportError as exc:  # read timeout, dropped connection
                raise self._unavailable(exc) from exc
            else:
                if response.status_code < 400:
                    return response
                if stream:
                    response.read()
                response.close()
                if response.status_code != 503 or attempt == self.retries:
                    raise self._http_error(response)
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _unavailable(self, exc: Exception) -> InferenceUnavailable:
        detail = str(exc) or type(exc).__name__
        return InferenceUnavailable(
            f"the inference server at {self.base_url} is not reachable: {detail}"
        )

    def _http_error(self, response: httpx.Response) -> Exception:
        try:
            message = _message(response.json())
        except ValueError:
            message = response.text[:200]
        if response.status_code == 503:
            return InferenceUnavailable(
                f"the inference server at {self.base_url} is not ready: {message}"
            )
        return InferenceError(
            f"the inference server answered {response.status_code}: {message}",
            status_code=response.status_code,
        )


def _message(body: Any) -> str:
    """The error message of OpenAI's and newer vLLM's {"error": {"message"}}, older vLLM's
    {"object": "error", "message"}, TGI's {"error": "..."} or a {"detail"}."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error:
            return str(error)
        return str(body.get("message") or body.get("detail") or body)
    return str(body)
