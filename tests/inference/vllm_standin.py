"""A stand-in for vLLM's OpenAI-compatible server: a real HTTP server in a thread that
answers as vLLM documents (GET /v1/models, POST /v1/completions and /v1/chat/completions,
plain and streamed, its 404 for an unknown model and its 400s) and records every request body.

Tokens are counted as the web side estimates them (characters / 3 + 1) and every word of the
reply is one token, so a test can tell what fits the served context.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVED_MODEL = "Qwen/Qwen3-0.6B"
REPLY = "Hotel costs in London are reimbursed up to 180 EUR per night [1]."


class VllmStandin:
    def __init__(self, *, model: str = SERVED_MODEL, max_model_len: int = 4096):
        self.model = model
        self.max_model_len = max_model_len
        self.reply = REPLY
        self.legacy_errors = False  # vLLM before its errors nested under "error"
        self.kind: str | None = None  # vLLM says nothing; the bundled server says base/instruct
        self.posted: list[tuple[str, dict]] = []  # (path, body) of every POST, in order
        self.model_listings = 0
        standin = self

        class Handler(_Handler):
            server_state = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def bodies(self, path: str) -> list[dict]:
        return [body for posted_path, body in self.posted if posted_path == path]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what vLLM answers

    def model_list(self) -> dict:
        created = int(time.time())
        extra = {"kind": self.kind} if self.kind else {}
        return {
            "object": "list",
            "data": [
                {
                    **extra,
                    "id": self.model,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": self.model,
                    "parent": None,
                    "max_model_len": self.max_model_len,
                    "permission": [
                        {
                            "id": f"modelperm-{uuid.uuid4().hex}",
                            "object": "model_permission",
                            "created": created,
                            "allow_create_engine": False,
                            "allow_sampling": True,
                            "allow_logprobs": True,
                            "allow_search_indices": False,
                            "allow_view": True,
                            "allow_fine_tuning": False,
                            "organization": "*",
                            "group": None,
                            "is_blocking": False,
                        }
                    ],
                }
            ],
        }

    def error(self, status: HTTPStatus, message: str) -> dict:
        error_type = {404: "NotFoundError", 400: "BadRequestError"}[status.value]
        info = {"message": message, "type": error_type, "param": None, "code": status.value}
        return {"object": "error", **info} if self.legacy_errors else {"error": info}

    def rejection(self, body: dict, *, chat: bool) -> tuple[HTTPStatus, str] | None:
        if body.get("model") != self.model:
            return HTTPStatus.NOT_FOUND, f"The model `{body.get('model')}` does not exist."
        if body.get("stream_options") and not body.get("stream"):
            return HTTPStatus.BAD_REQUEST, "Stream options can only be defined when `stream=True`."
        max_tokens = body.get("max_tokens") or 16
        prompt_tokens = prompt_token_count(body, chat=chat)
        if prompt_tokens + max_tokens > self.max_model_len:
            return HTTPStatus.BAD_REQUEST, (
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This "
                f"model's maximum context length is {self.max_model_len} tokens and your "
                f"request has {prompt_tokens} input tokens ({max_tokens} > "
                f"{self.max_model_len} - {prompt_tokens})."
            )
        return None


def prompt_token_count(body: dict, *, chat: bool) -> int:
    if chat:
        text = "".join(str(m.get("content", "")) for m in body.get("messages") or [])
    else:
        text = str(body.get("prompt", ""))
    return len(text) // 3 + 1


class _Handler(BaseHTTPRequestHandler):
    server_state: VllmStandin

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        if self.path != "/v1/models":
            return self._json(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        self.server_state.model_listings += 1
        return self._json(HTTPStatus.OK, self.server_state.model_list())

    def do_POST(self):
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        state.posted.append((self.path, body))
        chat = self.path == "/v1/chat/completions"
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            return self._json(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        rejected = state.rejection(body, chat=chat)
        if rejected:
            status, message = rejected
            return self._json(status, state.error(status, message))
        words = re.findall(r"\S+\s*", state.reply)
        max_tokens = body.get("max_tokens") or 16
        finish_reason = "length" if len(words) > max_tokens else "stop"
        words = words[:max_tokens]
        usage = {
            "prompt_tokens": prompt_token_count(body, chat=chat),
            "total_tokens": prompt_token_count(body, chat=chat) + len(words),
            "completion_tokens": len(words),
        }
        envelope = {
            "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
            "created": int(time.time()),
            "model": state.model,
        }
        if body.get("stream"):
            include_usage = (body.get("stream_options") or {}).get("include_usage")
            chunks = _chunks(words, envelope, chat=chat, finish_reason=finish_reason)
            if include_usage:
                kind = "chat.completion.chunk" if chat else "text_completion"
                chunks.append({**envelope, "object": kind, "choices": [], "usage": usage})
            return self._events(chunks)
        text = "".join(words)
        if chat:
            choice = {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "reasoning_content": None,
                    "content": text,
                    "tool_calls": [],
                },
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
                "prompt_logprobs": None,
            }
        kind = "chat.completion" if chat else "text_completion"
        reply = {**envelope, "object": kind, "choices": [choice], "usage": usage}
        return self._json(HTTPStatus.OK, reply)

    def _json(self, status: HTTPStatus, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _events(self, chunks: list[dict]) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def _chunks(words: list[str], envelope: dict, *, chat: bool, finish_reason: str) -> list[dict]:
    """vLLM's stream: a chat stream opens with the assistant role and an empty content and
    ends with an empty delta carrying the finish reason; a completion stream's last text
    chunk carries it."""
    if chat:
        kind = "chat.completion.chunk"
        deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in words]
        chunks = [
            {
                **envelope,
                "object": kind,
                "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}],
            }
            for d in deltas
        ]
        last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}
        chunks.append({**envelope, "object": kind, "choices": [{**last, "stop_reason": None}]})
        return chunks
    chunks = []
    for position, word in enumerate(words, start=1):
        done = finish_reason if position == len(words) else None
        choice = {"index": 0, "text": word, "logprobs": None, "finish_reason": done}
        chunks.append({**envelope, "object": "text_completion", "choices": [choice]})
    return chunks
