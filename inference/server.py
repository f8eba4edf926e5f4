"""The inference process: an OpenAI-compatible HTTP API around the generation engine.

    python -m inference.server [--host 127.0.0.1] [--port 8001] [--model-dir DIR]

Endpoints: POST /v1/completions, POST /v1/chat/completions (both with ``stream`` as
server-sent events and ``usage`` token counts), GET /v1/models, GET /health.
The port is bound at once; /health and /v1/models answer 503 until the model is prepared,
loaded and warmed up with one generation, then 200.

Why not ``transformers serve`` (4.57.1): it has no /v1/completions (a base model needs a raw
prompt, not a chat template), always streams, reports no token usage, answers /health before
any model is loaded, and its continuous batching fails on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

logger = logging.getLogger("inference.server")

MAX_TOKENS_DEFAULT = 256
WARMUP_PROMPT = (
    "The maintenance manual lists the torque values for every fastener on the landing gear. " * 24
    + "\nQuestion: What does the manual list?\nAnswer:"
)


class BadRequest(ValueError):
    pass


@dataclass
class State:
    status: str = "starting"  # starting, preparing, loading, warming_up, ready, failed
    error: str = ""
    engine: Any = None
    model_name: str = ""


def create_app(*, model_dir: Path | None = None) -> Starlette:
    state = State()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        threading.Thread(target=_load, args=(state, model_dir), daemon=True).start()
        yield
        if state.engine is not None:
            state.engine.stop()

    async def health(request: Request) -> Response:
        body = {"status": state.status, "model": state.model_name}
        if state.error:
            body["error"] = state.error
        return JSONResponse(body, status_code=200 if state.status == "ready" else 503)

    async def models(request: Request) -> Response:
        if state.status != "ready":
            return _error(503, f"the model is not ready ({state.status})", "unavailable")
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": state.model_name, "object": "model", "owned_by": "local"}],
            }
        )

    async def completions(request: Request) -> Response:
        return await _handle(request, state, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await _handle(request, state, chat=True)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def _load(state: State, model_dir: Path | None) -> None:
    from inference import prepare

    try:
        state.status = "preparing"
        model_dir = model_dir or prepare.prepared_model_dir()
        state.model_name = prepare.model_name(model_dir)
        state.status = "loading"
        from inference.engine import Engine

        engine = Engine(model_dir=model_dir)
        engine.load()
        state.status = "warming_up"
        _warm_up(engine)
        state.engine = engine
        state.status = "ready"
        logger.info("ready: %s on %s", state.model_name, engine.device)
    except Exception as exc:
        logger.exception("the inference server could not start")
        state.error = f"{type(exc).__name__}: {exc}"
        state.status = "failed"


def _warm_up(engine: Any) -> None:
    started = time.monotonic()
    job = engine.submit(engine.encode_prompt(WARMUP_PROMPT), max_tokens=8)
    for _event in job.events():
        pass
    logger.info("warm-up generation took %.1fs", time.monotonic() - started)


async def _handle(request: Request, state: State, *, chat: bool) -> Response:
    if state.status != "ready":
        return _error(503, f"the model is not ready ({state.status})", "unavailable")
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        params = _parse_params(body)
        prompt_ids = _encode(state.engine, body, chat=chat)
        from inference.engine import PromptTooLong

        try:
            job = state.engine.submit(
                prompt_ids, max_tokens=params["max_tokens"], stop=params["stop"]
            )
        except PromptTooLong as exc:
            raise BadRequest(str(exc)) from exc
    except ValueError as exc:  # BadRequest, JSONDecodeError, template errors
        return _error(400, str(exc), "invalid_request_error")
    response_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    protocol = _Protocol(id=response_id, model=state.model_name, chat=chat)
    if params["stream"]:
        return StreamingResponse(
            _stream(job, protocol, include_usage=params["include_usage"]),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return await _complete(job, protocol)


def _parse_params(body: dict) -> dict:
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


def _encode(engine: Any, body: dict, *, chat: bool) -> list[int]:
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
class _Protocol:
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


def _usage(finished: Any) -> dict:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


async def _next_event(job: Any) -> Any:
    """Wait for the job's next event without blocking the event loop, cancellably."""
    while True:
        event = await anyio.to_thread.run_sync(lambda: job.next_event(timeout=0.5))
        if event is not None:
            return event


async def _stream(job: Any, protocol: _Protocol, *, include_usage: bool):
    import json

    from inference.engine import Delta, GenerationError

    def sse(payload: dict) -> str:
        return f"data: {json.dumps(payload)}\n\n"

    try:
        if protocol.chat:
            first = protocol.chunk(text=None, finish_reason=None)
            first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
            yield sse(first)
        while True:
            try:
                event = await _next_event(job)
            except GenerationError as exc:
                yield sse({"error": {"message": str(exc), "type": "server_error"}})
                break
            if isinstance(event, Delta):
                yield sse(protocol.chunk(text=event.text, finish_reason=None))
                continue
            yield sse(
                protocol.chunk(text=None if protocol.chat else "", finish_reason=event.reason)
            )
            if include_usage:
                yield sse(protocol.usage_chunk(_usage(event)))
            break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # a client that hung up stops costing decode steps


async def _complete(job: Any, protocol: _Protocol) -> Response:
    from inference.engine import Delta, GenerationError

    parts = []
    try:
        while True:
            try:
                event = await _next_event(job)
            except GenerationError as exc:
                return _error(500, str(exc), "server_error")
            if isinstance(event, Delta):
                parts.append(event.text)
                continue
            return JSONResponse(
                protocol.full(text="".join(parts), finish_reason=event.reason, usage=_usage(event))
            )
    finally:
        job.cancelled.set()


def _error(status: int, message: str, kind: str) -> Response:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Serve the generator over an OpenAI-compatible API"
    )
    parser.add_argument("--host", default=os.environ.get("INFERENCE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("INFERENCE_PORT", "8001")))
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--log-level", default=os.environ.get("INFERENCE_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    app = create_app(model_dir=args.model_dir)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
