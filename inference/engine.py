"""The generation engine: one model, a queue of jobs, batched greedy decoding with streaming.

Jobs that are waiting when the engine becomes free are decoded together in one batched
``generate`` call (left-padded), each with its own stop strings, token limit and
cancellation; tokens stream to each job as they are produced. Requests arriving during a
batch wait for the next one. transformers' own continuous batching (4.57) cannot size its
cache on CPU and produces wrong tokens for Gemma 3 past its sliding window, so it is not used.

Imports torch and transformers; only the inference process may import this module.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from prometheus_client import Counter, Gauge, Histogram
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

logger = logging.getLogger(__name__)

# Served by the inference server's GET /metrics (one process: no multiprocess mode).
BATCH_SIZE = Gauge("chatbot_inference_batch_size", "Requests in the batch decoding now (0: idle).")
QUEUE_WAIT = Histogram(
    "chatbot_inference_queue_wait_seconds",
    "Time from a request's arrival to the start of the batch that decodes it.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOKENS_GENERATED = Counter(
    "chatbot_inference_tokens_generated_total", "Completion tokens decoded, all requests."
)
TOKENS_PER_SECOND = Gauge(
    "chatbot_inference_tokens_per_second", "Completion tokens per second of the last batch."
)


class GenerationError(RuntimeError):
    pass


class PromptTooLong(ValueError):
    pass


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" (EOS or a stop string) or "length" (max_tokens reached)
    prompt_tokens: int
    completion_tokens: int


@dataclass(eq=False)
class Job:
    """One generation request; the engine's worker thread feeds it, one consumer reads it."""

    prompt_ids: list[int]
    max_tokens: int
    stop: tuple[str, ...]
    eos_ids: frozenset[int]
    tokenizer: object
    token_ids: list[int] = field(default_factory=list)
    emitted_chars: int = 0
    done: bool = False
    finish_reason: str = "length"
    cancelled: threading.Event = field(default_factory=threading.Event)
    outbox: queue.Queue = field(default_factory=queue.Queue)
    submitted_at: float = field(default_factory=time.monotonic)

    def push(self, token_id: int) -> None:
        if self.done:
            return
        if token_id in self.eos_ids:
            self._finish("stop", self._decode())
            return
        self.token_ids.append(token_id)
        TOKENS_GENERATED.inc()
        text = self._decode()
        cut = _earliest_stop(text, self.stop)
        if cut is not None:
            self._finish("stop", text[:cut])
        elif len(self.token_ids) >= self.max_tokens:
            self._finish("length", text)
        else:
            self._emit_upto(text, len(text) - _held_back_chars(text, self.stop))

    def close(self, error: str | None = None) -> None:
        if error is not None and not self.done:
            self.done = True
            self.outbox.put(GenerationError(error))
        elif not self.done:
            self._finish(self.finish_reason, self._decode())

    def next_event(self, *, timeout: float | None = None) -> Delta | Finished | None:
        """The next event, or None after ``timeout`` seconds without one.

        Every job ends with exactly one Finished, or GenerationError raised here.
        """
        try:
            item = self.outbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def events(self) -> Iterator[Delta | Finished]:
        while True:
            event = self.next_event()
            yield event
            if isinstance(event, Finished):
                return

    def _decode(self) -> str:
        text = self.tokenizer.decode(self.token_ids, skip_special_tokens=True)
        # A multi-byte character split across tokens decodes to U+FFFD until it completes.
        return text.rstrip("\ufffd") if not self.done else text

    def _emit_upto(self, text: str, end: int) -> None:
        if end > self.emitted_chars:
            self.outbox.put(Delta(text[self.emitted_chars : end]))
            self.emitted_chars = end

    def _finish(self, reason: str, text: str) -> None:
        self._emit_upto(text, len(text))
        self.done = True
        self.finish_reason = reason
        self.outbox.put(Finished(reason, len(self.prompt_ids), len(self.token_ids)))


def _earliest_stop(text: str, stops: Sequence[str]) -> int | None:
    positions = [i for s in stops if s and (i := text.find(s)) != -1]
    return min(positions) if positions else None


def _held_back_chars(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest


class _BatchStreamer(BaseStreamer):
    def __init__(self, jobs: list[Job]):
        self.jobs = jobs
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for job, token_id in zip(self.jobs, value.reshape(-1).tolist(), strict=True):
            job.push(token_id)

    def end(self) -> None:
        pass


class _JobsFinished(StoppingCriteria):
    def __init__(self, jobs: list[Job]):
        self.jobs = jobs

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        flags = [job.done or job.cancelled.is_set() for job in self.jobs]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


def pick_device() -> tuple[str, torch.dtype]:
    """CUDA with bfloat16 when available, else CPU with float32 (bfloat16 is slower on CPU)."""
    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


class Engine:
    def __init__(self, *, model_dir: Path, max_batch_size: int | None = None):
        self.model_dir = model_dir
        self.device, self.dtype = pick_device()
        self.max_batch_size = max_batch_size or (16 if self.device == "cuda" else 4)
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()

    def load(self) -> None:
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_dir,
            dtype=self.dtype,
            attn_implementation="sdpa",
            local_files_only=True,
        ).to(self.device)
        self.model.eval()
        config = self.model.generation_config
        eos = (
            config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        )
        self.eos_ids = frozenset(eos if isinstance(eos, list) else [eos])
        self.pad_id = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else min(self.eos_ids)
        )
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 4096))
        self._worker = threading.Thread(target=self._run, name="generation", daemon=True)
        self._worker.start()
        logger.info(
            "loaded %s on %s/%s in %.1fs",
            self.model_dir,
            self.device,
            self.dtype,
            time.monotonic() - started,
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout=30)

    def encode_prompt(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    def encode_chat(self, messages: list[dict]) -> list[int]:
        if not self.tokenizer.chat_template:
            raise ValueError("this model has no chat template; send a prompt to /v1/completions")
        return list(
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        )

    def submit(self, prompt_ids: list[int], *, max_tokens: int, stop: Sequence[str] = ()) -> Job:
        if not prompt_ids:
            raise PromptTooLong("the prompt is empty")
        if len(prompt_ids) + max_tokens > self.context_length:
            raise PromptTooLong(
                f"the prompt has {len(prompt_ids)} tokens; with max_tokens={max_tokens} it "
                f"exceeds the model's context of {self.context_length} tokens"
            )
        job = Job(
            prompt_ids=prompt_ids,
            max_tokens=max_tokens,
            stop=tuple(s for s in stop if s),
            eos_ids=self.eos_ids,
            tokenizer=self.tokenizer,
        )
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            batch = [job for job in batch if not job.cancelled.is_set()]
            if batch:
                self._generate_observed(batch)

    def _generate_observed(self, jobs: list[Job]) -> None:
        started = time.monotonic()
        for job in jobs:
            QUEUE_WAIT.observe(started - job.submitted_at)
        BATCH_SIZE.set(len(jobs))
        try:
            self._generate(jobs)
        finally:
            BATCH_SIZE.set(0)
            elapsed = time.monotonic() - started
            tokens = sum(len(job.token_ids) for job in jobs)
            if elapsed > 0:
                TOKENS_PER_SECOND.set(tokens / elapsed)

    def _left_padded(self, prompts: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention_mask.to(self.device),
        }

    def _generate(self, jobs: list[Job]) -> None:
        try:
            inputs = self._left_padded([job.prompt_ids for job in jobs])
            with torch.inference_mode():
                self.model.generate(
                    **inputs,
                    max_new_tokens=max(job.max_tokens for job in jobs),
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    eos_token_id=sorted(self.eos_ids),
                    pad_token_id=self.pad_id,
                    streamer=_BatchStreamer(jobs),
                    stopping_criteria=StoppingCriteriaList([_JobsFinished(jobs)]),
                )
        except Exception as exc:  # the worker must survive one bad batch
            logger.exception("generation failed")
            for job in jobs:
                job.close(error=f"generation failed: {type(exc).__name__}: {exc}")
            return
        for job in jobs:
            job.close()
