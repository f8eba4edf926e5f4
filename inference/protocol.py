"""The OpenAI-compatible wire format: request parameters in, completion objects out.

Pure data handling, no model and no HTTP framework; the server wraps it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

MAX_TOKENS_DEFAULT = 256


class BadRequest(ValueError):
    pass


def server_sent_event(data: dict | str, *, event: str | None = None) -> str:
    """One text/event-stream message; a dict is sent as JSON."""
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


def parse_params(body: dict) -> dict:
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", MAX_TOKENS_DEFAULT))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens must be a positive integer")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 8:
        raise BadRequest("stop must be a string or a list of at most 8 strings")
    temperature = body.get("temperature", 0)
    if temperature not in (0, None):
        raise BadRequest("only greedy decoding is served: temperature must be 0 or absent")
    if body.get("n", 1) != 1:
        raise BadRequest("n must be 1")
    stream_options = body.get("stream_options") or {}
    return {
        "max_tokens": max_tokens,
        "stop": tuple(stop),
        "stream": bool(body.get("stream", False)),
        "include_usage": bool(stream_options.get("include_usage", False)),
    }


def encode_request(engine: Any, body: dict, *, chat: bool) -> list[int]:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list")
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise BadRequest("each message needs a role and a string content")
        return engine.encode_chat(messages)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest("prompt must be a non-empty string")
    return engine.encode_prompt(prompt)


@dataclass(frozen=True)
class Protocol:
    id: str
    model: str
    chat: bool

    def chunk(self, *, text: str | None, finish_reason: str | None) -> dict:
        if self.chat:
            delta = {"content": text} if text is not None else {}
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish_reason}
        return self._envelope(choices=[choice], streaming=True)

    def full(self, *, text: str, finish_reason: str, usage: dict) -> dict:
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish_reason}
        return {**self._envelope(choices=[choice], streaming=False), "usage": usage}

    def usage_chunk(self, usage: dict) -> dict:
        return {**self._envelope(choices=[], streaming=True), "usage": usage}

    def _envelope(self, *, choices: list, streaming: bool) -> dict:
        if self.chat:
            kind = "chat.completion.chunk" if streaming else "chat.completion"
        else:
            kind = "text_completion"
        return {
            "id": self.id,
            "object": kind,
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
        }


def usage(finished: Any) -> dict:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }
