"""The inference process: an OpenAI-compatible HTTP API around the generation engine.

    python -m inference.server [--host 127.0.0.1] [--port 8001] [--model-dir DIR]

Endpoints: POST /v1/completions, POST /v1/chat/completions (both with ``stream`` as
server-sent events and ``usage`` token counts), GET /v1/models, GET /health, GET /metrics
(Prometheus; unauthenticated like the rest of this API: bind it to an internal address).
The port is bound at once; /health and /v1/models answer 503 until the model is prepared,
loaded and warmed up with one generation, then 200.

Why not ``transformers serve`` (4.57.1): it has no /v1/completions (a base model needs a raw
prompt, not a chat template), always streams, reports no token usage, answers /health before
any model is loaded, and its continuous batching fails on CPU. transformers 5.23's continuous
batching is exact on CPU, but served eight prompts 1.41x faster than one at a time where this
engine is 2.05x (bench/batching.py, docs/benchmarks.md), and it needs transformers 5, which
the pinned sentence-transformers refuses.
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
# One process with its own /metrics: the web processes' multiprocess directory (inherited
# under `make run`) would otherwise collect this server's series into theirs as well.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
os.environ.pop("prometheus_multiproc_dir", None)

import anyio
import uvicorn
from jinja2.exceptions import TemplateError
from prometheus_client import REGISTRY, Counter
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from inference.model_files import adapter_dir_for, max_model_len, model_kind, served_name
from inference.protocol import (
    BadRequest,
    Protocol,
    encode_request,
    parse_params,
    server_sent_event,
    usage,
)

logger = logging.getLogger("inference.server")

WARMUP_PROMPT = (
    "The maintenance manual lists the torque values for every fastener on the landing gear. " * 24
    + "\nQuestion: What does the manual list?\nAnswer:"
)


REQUESTS = Counter(
    "chatbot_inference_requests_total",
    "Generation requests by endpoint and status (a stream's: 200 finished, 500 failed, "
    "499 the client left first).",
    ["endpoint", "status"],
)


@dataclass
class State:
    status: str = "starting"  # starting, preparing, loading, warming_up, ready, failed
    error: str = ""
    engine: Any = None
    model_name: str = ""
    model_kind: str = ""  # base or instruct, reported in /v1/models
    max_model_len: int | None = None


@dataclass(frozen=True)
class ServerConfig:
    """What to serve; ``main`` fills it from the command line (defaults from the environment)."""

    data_dir: Path = Path("var")
    model: str = ""  # a local Hugging Face model directory instead of the packaged default
    model_dir: Path | None = None  # an already prepared directory: skips preparation
    max_batch_size: int | None = None
    prefix_cache_size: int = 4
    draft_tokens: int = 8
    quantize: str = ""
    dtype: str = ""
    adapter: str = ""  # INFERENCE_ADAPTER: empty for the shipped one, none, or a directory


def create_app(config: ServerConfig | None = None) -> Starlette:
    config = config or ServerConfig()
    state = State()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        threading.Thread(target=_load, args=(state, config), daemon=True).start()
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
        entry = {"id": state.model_name, "object": "model", "owned_by": "local"}
        # Beyond OpenAI's fields: what a client without the model's files cannot know.
        entry["kind"] = state.model_kind
        if state.max_model_len:
            entry["max_model_len"] = state.max_model_len
        return JSONResponse({"object": "list", "data": [entry]})

    async def completions(request: Request) -> Response:
        return await _handle(request, state, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await _handle(request, state, chat=True)

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(REGISTRY), media_type=content_type)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )


def _load(state: State, config: ServerConfig) -> None:
    from inference import prepare

    try:
        state.status = "preparing"
        model_dir = config.model_dir or prepare.prepared_model_dir(
            data_dir=config.data_dir, override=config.model
        )
        adapter_dir = adapter_dir_for(config.adapter, override_model=config.model)
        state.model_name = served_name(model_dir, adapter_dir)
        state.model_kind, state.max_model_len = model_kind(model_dir), max_model_len(model_dir)
        state.status = "loading"
        from inference.engine import Engine

        engine = Engine(
            model_dir=model_dir,
            max_batch_size=config.max_batch_size,
            prefix_cache_size=config.prefix_cache_size,
            draft_tokens=config.draft_tokens,
            quantize=config.quantize,
            dtype=config.dtype,
            adapter_dir=adapter_dir,
        )
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
    endpoint = "chat_completions" if chat else "completions"
    if state.status != "ready":
        REQUESTS.labels(endpoint, "503").inc()
        return _error(503, f"the model is not ready ({state.status})", "unavailable")
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        params = parse_params(body)
        prompt_ids = encode_request(state.engine, body, chat=chat)
        from inference.engine import PromptTooLong

        try:
            job = state.engine.submit(
                prompt_ids, max_tokens=params["max_tokens"], stop=params["stop"]
            )
        except PromptTooLong as exc:
            raise BadRequest(str(exc)) from exc
    except (ValueError, TemplateError) as exc:  # BadRequest, JSONDecodeError, chat templates
        REQUESTS.labels(endpoint, "400").inc()
        return _error(400, str(exc), "invalid_request_error")
    response_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    protocol = Protocol(id=response_id, model=state.model_name, chat=chat)
    if params["stream"]:
        return StreamingResponse(
            _stream(job, protocol, include_usage=params["include_usage"], endpoint=endpoint),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return await _complete(job, protocol, endpoint=endpoint)


async def _next_event(job: Any) -> Any:
    """Wait for the job's next event without blocking the event loop, cancellably."""
    while True:
        event = await anyio.to_thread.run_sync(lambda: job.next_event(timeout=0.5))
        if event is not None:
            return event


async def _stream(job: Any, protocol: Protocol, *, include_usage: bool, endpoint: str):
    from inference.engine import Delta, GenerationError

    sse = server_sent_event
    status = "499"
    try:
        if protocol.chat:
            first = protocol.chunk(text=None, finish_reason=None)
            first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
            yield sse(first)
        while True:
            try:
                event = await _next_event(job)
            except GenerationError as exc:
                status = "500"
                yield sse({"error": {"message": str(exc), "type": "server_error"}})
                break
            if isinstance(event, Delta):
                yield sse(protocol.chunk(text=event.text, finish_reason=None))
                continue
            yield sse(
                protocol.chunk(text=None if protocol.chat else "", finish_reason=event.reason)
            )
            if include_usage:
                yield sse(protocol.usage_chunk(usage(event)))
            status = "200"
            break
        yield sse("[DONE]")
    finally:
        REQUESTS.labels(endpoint, status).inc()
        job.cancelled.set()  # a client that hung up stops costing decode steps


async def _complete(job: Any, protocol: Protocol, *, endpoint: str) -> Response:
    from inference.engine import Delta, GenerationError

    parts = []
    status = "499"
    try:
        while True:
            try:
                event = await _next_event(job)
            except GenerationError as exc:
                status = "500"
                return _error(500, str(exc), "server_error")
            if isinstance(event, Delta):
                parts.append(event.text)
                continue
            status = "200"
            return JSONResponse(
                protocol.full(text="".join(parts), finish_reason=event.reason, usage=usage(event))
            )
    finally:
        REQUESTS.labels(endpoint, status).inc()
        job.cancelled.set()


def _error(status: int, message: str, kind: str) -> Response:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def main(argv: list[str] | None = None) -> None:
    """The inference process's only reader of the environment: each option's default."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="Serve the generator over an OpenAI-compatible API"
    )
    parser.add_argument("--host", default=env("INFERENCE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("INFERENCE_PORT", "8001")))
    parser.add_argument("--data-dir", type=Path, default=Path(env("DATA_DIR") or "var"))
    parser.add_argument(
        "--model",
        default=env("INFERENCE_MODEL", ""),
        help="a local Hugging Face model directory (default: the packaged Gemma 3 270M)",
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="an already prepared one")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=int(env("INFERENCE_MAX_BATCH", "0")) or None,
        help="requests decoded together; more wait for a place (default 64 on a GPU, 16 on CPU)",
    )
    parser.add_argument(
        "--prefix-cache",
        type=int,
        default=int(env("INFERENCE_PREFIX_CACHE", "4")),
        help="recent prompts whose key/value cache is kept to prefill what a new prompt "
        "shares with them (0: off)",
    )
    parser.add_argument(
        "--draft-tokens",
        type=int,
        default=int(env("INFERENCE_DRAFT_TOKENS", "8")),
        help="prompt lookup decoding: tokens copied from the prompt and checked in one step "
        "while a request decodes alone (0: off; the tokens are the same either way)",
    )
    parser.add_argument(
        "--quantize",
        choices=["", "int8"],
        default=env("INFERENCE_QUANTIZE", ""),
        help="int8: dynamic int8 linear layers on CPU, faster but not the same answers",
    )
    parser.add_argument(
        "--dtype",
        choices=["", "float32", "bfloat16", "float16"],
        default=env("INFERENCE_DTYPE", ""),
        help="the weights' type (default: bfloat16 on a GPU, float32 on CPU)",
    )
    parser.add_argument(
        "--adapter",
        default=env("INFERENCE_ADAPTER", ""),
        help="a LoRA adapter directory merged into the weights at load; `none` for the base "
        "model (default: the shipped answer adapter, with the packaged default model only)",
    )
    parser.add_argument("--log-level", default=env("INFERENCE_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config = ServerConfig(
        data_dir=args.data_dir.resolve(),
        model=args.model,
        model_dir=args.model_dir,
        max_batch_size=args.max_batch,
        prefix_cache_size=args.prefix_cache,
        draft_tokens=args.draft_tokens,
        quantize=args.quantize,
        dtype=args.dtype,
        adapter=args.adapter,
    )
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
