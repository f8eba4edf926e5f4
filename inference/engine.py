"""The generation engine: one model, continuous batching of greedy decodes, streaming.

Iteration-level scheduling: between two decode steps the scheduler admits waiting requests
(each prompt is prefilled alone, its first token streamed at once) and merges them into the
running batch; every step then decodes one token for every running request, and a request
that finished, hit a stop string or was cancelled leaves the batch before the next step.
Nobody waits for somebody else's answer to end.

The batch shares one key/value cache, left-padded: each request's tokens sit at the right
end of its row, positions are counted per row, and the padding is masked. Every layer keeps
its full cache (the sliding-window layers included) and the window is applied by the
attention mask, so rows of different lengths can be stacked. transformers' own continuous
batching is not used: see docs/benchmarks.md ("Inference") for what was measured.

Prefix reuse: the key/value cache of the last few prompts is kept; a new prompt that starts
with the same tokens (every answer prompt starts with the same instructions and examples)
is prefilled from the end of the longest shared prefix.

Imports torch and transformers; only the inference process may import this module.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from prometheus_client import Counter, Gauge, Histogram
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

logger = logging.getLogger(__name__)

# Served by the inference server's GET /metrics (one process: no multiprocess mode).
BATCH_SIZE = Gauge("chatbot_inference_batch_size", "Requests in the running batch (0: idle).")
QUEUE_WAIT = Histogram(
    "chatbot_inference_queue_wait_seconds",
    "Time from a request's arrival to the start of its prefill.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOKENS_GENERATED = Counter(
    "chatbot_inference_tokens_generated_total", "Completion tokens decoded, all requests."
)
TOKENS_PER_SECOND = Gauge(
    "chatbot_inference_tokens_per_second", "Completion tokens per second of the last decode step."
)
PREFIX_TOKENS = Counter(
    "chatbot_inference_prefix_tokens_total",
    "Prompt tokens by how they were prefilled: computed, or reused from an earlier prompt.",
    ["source"],
)

HEAD_FULL_ROWS = Counter(
    "chatbot_inference_full_vocabulary_rows_total",
    "Decode rows whose greedy token the shortlist could not prove: scored in full.",
)
DRAFT_TOKENS = Counter(
    "chatbot_inference_draft_tokens_total",
    "Prompt lookup draft tokens checked in a speculative step, by outcome.",
    ["outcome"],
)
# Prompt lookup: the longest n-gram at the end of the sequence searched for earlier in it.
DRAFT_NGRAM = 3

# A shared prefix shorter than this is computed again (copying it would save too little).
MIN_REUSED_PREFIX = 16


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
    reused_prefix_tokens: int = 0

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

    @property
    def leaving(self) -> bool:
        """Finished or cancelled: the job takes no more decode steps."""
        return self.done or self.cancelled.is_set()

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


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(dtype: str = "") -> tuple[str, torch.dtype]:
    """CUDA with bfloat16 when available, else CPU with float32 (bfloat16 is slower on CPU);
    ``dtype`` (float32, bfloat16 or float16) overrides the type."""
    if dtype and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    default = torch.bfloat16 if device == "cuda" else torch.float32
    return device, DTYPES[dtype] if dtype else default


class GreedyHead:
    """The greedy choice over the vocabulary, the output layer's cost halved on CPU.

    The output layer (262,144 x 640 for Gemma 3 270M, 671 MB in float32) is read once per
    decode step: more than half of a step on CPU. Here a bfloat16 copy (half the bytes)
    scores every token approximately, the ``shortlist`` best are scored exactly in float32,
    and the best of those is the choice when a bound proves that no token outside the
    shortlist can beat it: each approximate score is within ``ERROR`` x |h| x max|w| of
    the exact one (bfloat16 rounding of the hidden state and of the weights, float32
    accumulation), so when the best exact score clears the best approximate score left
    out by that much, it is the float32 argmax. Otherwise (rare) the row is scored in full.
    Any monotonic transform of the logits (Gemma's soft-capping) keeps the argmax.
    """

    # bfloat16 keeps 8 significant bits (unit roundoff 2^-8): the hidden state and the weight
    # each rounded (2 x 2^-8) and the score rounded (2^-8) stay under 1.5 x 2^-7 of
    # sum |h_i w_i| <= |h| |w|; float32 accumulation adds ~640 x 2^-24. 2^-6 leaves room.
    ERROR = 2.0**-6

    def __init__(self, weight: torch.Tensor, *, shortlist: int = 16):
        weight = weight.detach()
        self.weight = weight
        self.approximate = weight.to(torch.bfloat16)
        self.shortlist = shortlist
        self.max_row_norm = float(weight.norm(dim=1).max())

    def __call__(self, hidden: torch.Tensor) -> list[int]:
        """``hidden``: [rows, width] float32 final hidden states; one token id per row."""
        scores = F.linear(hidden.to(torch.bfloat16), self.approximate).float()
        top = scores.topk(self.shortlist + 1, dim=-1)
        candidates = top.indices[:, : self.shortlist]
        exact = torch.einsum("rd,rkd->rk", hidden, self.weight[candidates])
        best_exact, best = exact.max(dim=-1)
        bound = self.ERROR * hidden.norm(dim=-1) * self.max_row_norm
        proven = best_exact >= top.values[:, self.shortlist] + bound
        chosen = candidates.gather(1, best[:, None])[:, 0]
        unproven = (~proven).nonzero()[:, 0]
        if len(unproven):
            HEAD_FULL_ROWS.inc(len(unproven))
            full = F.linear(hidden[unproven], self.weight).argmax(dim=-1)
            chosen[unproven] = full
        return chosen.tolist()


KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [batch, heads, len, dim]


class PrefixCache:
    """The key/value cache of the last few prompts, to prefill a new one from what it shares.

    Entries are never modified (a forward pass appends by concatenation, into new tensors),
    so a reused prefix is a slice, not a copy.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], KV] = OrderedDict()

    def longest(self, prompt_ids: Sequence[int]) -> tuple[int, KV | None]:
        """The longest stored prefix of ``prompt_ids`` (at most all but its last token)."""
        limit = len(prompt_ids) - 1
        best, best_kv, best_key = 0, None, None
        for key, kv in self._entries.items():
            shared = _shared_length(key, prompt_ids, limit)
            if shared > best:
                best, best_kv, best_key = shared, kv, key
        if best < MIN_REUSED_PREFIX or best_kv is None:
            return 0, None
        self._entries.move_to_end(best_key)
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in best_kv]

    def store(self, prompt_ids: Sequence[int], kv: KV) -> None:
        if self.capacity <= 0:
            return
        self._entries[tuple(prompt_ids)] = kv
        self._entries.move_to_end(tuple(prompt_ids))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


def _lookup_draft(sequence: Sequence[int], size: int) -> list[int]:
    """The ``size`` tokens that followed the latest earlier occurrence of the sequence's last
    n-gram (longest n first, down to 2), or none."""
    for n in range(DRAFT_NGRAM, 1, -1):
        if len(sequence) <= n:
            continue
        tail = list(sequence[-n:])
        for start in range(len(sequence) - n - 1, -1, -1):
            if sequence[start : start + n] == tail:
                return list(sequence[start + n : start + n + size])
    return []


def _shared_length(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class _Running:
    """The batch being decoded: one left-padded cache, one row per job."""

    cache: DynamicCache  # full-attention layers only; each step appends one column
    mask: torch.Tensor  # [rows, width]: 1 for a real token, 0 for padding
    jobs: list[Job]
    next_ids: list[int]  # each row's last token, not yet in the cache
    lengths: list[int]  # each row's real tokens in the cache

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    @property
    def kv(self) -> KV:
        return [(layer.keys, layer.values) for layer in self.cache.layers]

    @kv.setter
    def kv(self, kv: KV) -> None:
        for layer, (keys, values) in zip(self.cache.layers, kv, strict=True):
            layer.keys, layer.values = keys, values


def _left_pad(tensor: torch.Tensor, amount: int, dim: int) -> torch.Tensor:
    if amount == 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim) + [amount, 0]
    return F.pad(tensor, pad)


class Engine:
    def __init__(
        self,
        *,
        model_dir: Path,
        max_batch_size: int | None = None,
        prefix_cache_size: int = 4,
        draft_tokens: int = 8,
        quantize: str = "",
        dtype: str = "",
        adapter_dir: Path | None = None,
    ):
        if quantize not in ("", "int8"):
            raise ValueError(f"quantize must be empty or int8, not {quantize!r}")
        self.model_dir = model_dir
        self.adapter_dir = adapter_dir
        self.draft_tokens = draft_tokens
        self.quantize = quantize
        self.device, self.dtype = pick_device(dtype)
        if quantize and self.device != "cpu":
            raise ValueError("int8 dynamic quantization runs on CPU only")
        self.max_batch_size = max_batch_size or (64 if self.device == "cuda" else 16)
        self.prefix_cache = PrefixCache(prefix_cache_size)
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._running: _Running | None = None
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()

    def load(self) -> None:
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_dir,
            dtype=self.dtype,
            attn_implementation="sdpa",
            local_files_only=True,
        ).to(self.device)
        if self.adapter_dir is not None:
            from inference.finetune import merged_model

            self.model = merged_model(self.model, self.adapter_dir)  # no cost per token
        self.model.eval()
        if self.quantize == "int8":
            # Opt-in: about 4x faster decoding on CPU, answers not identical (docs/benchmarks.md).
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear}, dtype=torch.qint8
            )
        head = self.model.get_output_embeddings()
        self._body = self.model.get_decoder()
        self._head = (
            GreedyHead(head.weight)
            if self.device == "cpu"
            and self.dtype == torch.float32
            and not self.quantize
            and getattr(head, "bias", None) is None
            else None
        )
        config = self.model.generation_config
        eos = (
            config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        )
        self.eos_ids = frozenset(eos if isinstance(eos, list) else [eos])
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 4096))
        self._worker = threading.Thread(target=self._run, name="generation", daemon=True)
        self._worker.start()
        logger.info(
            "loaded %s%s on %s/%s%s in %.1fs (batch %d, prefix cache %d, draft tokens %d)",
            self.model_dir,
            f" with adapter {self.adapter_dir}" if self.adapter_dir else "",
            self.device,
            self.dtype,
            "+int8" if self.quantize else "",
            time.monotonic() - started,
            self.max_batch_size,
            self.prefix_cache.capacity,
            self.draft_tokens,
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

    # The scheduler: everything below runs on the worker thread only.

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._admit()
            if self._running is None:
                continue
            try:
                if self.draft_tokens and len(self._running.jobs) == 1:
                    self._speculative_step()
                else:
                    self._decode_step()
            except Exception as exc:  # the worker must survive one bad step
                logger.exception("decoding failed")
                for job in self._running.jobs:
                    job.close(error=f"generation failed: {type(exc).__name__}: {exc}")
                self._running = None
            else:
                self._drop_leaving()
            BATCH_SIZE.set(len(self._running.jobs) if self._running else 0)

    def _forward(self, **inputs) -> torch.Tensor:
        """The model without its output layer: the final hidden states [rows, tokens, width]."""
        return self._body(**inputs, use_cache=True).last_hidden_state

    def _greedy(self, hidden: torch.Tensor) -> list[int]:
        """The greedy next token after each row of final hidden states [rows, width]."""
        if self._head is not None:
            return self._head(hidden)
        return self.model.get_output_embeddings()(hidden).argmax(dim=-1).tolist()

    def _admit(self) -> None:
        """Prefill waiting jobs into the batch while there is room (block only when idle)."""
        while self._running is None or len(self._running.jobs) < self.max_batch_size:
            try:
                job = (
                    self._jobs.get(timeout=0.2)
                    if self._running is None
                    else self._jobs.get_nowait()
                )
            except queue.Empty:
                return
            if job.cancelled.is_set():
                continue
            QUEUE_WAIT.observe(time.monotonic() - job.submitted_at)
            try:
                cache, first = self._prefill(job)
            except Exception as exc:
                logger.exception("prefill failed")
                job.close(error=f"generation failed: {type(exc).__name__}: {exc}")
                continue
            job.push(first)
            if not job.leaving:
                self._join(job, cache, first)
            BATCH_SIZE.set(len(self._running.jobs) if self._running else 0)

    @torch.inference_mode()
    def _prefill(self, job: Job) -> tuple[DynamicCache, int]:
        """The job's prompt through the model alone: its cache and its first token."""
        ids = job.prompt_ids
        reused, prefix = self.prefix_cache.longest(ids)
        job.reused_prefix_tokens = reused
        PREFIX_TOKENS.labels("reused").inc(reused)
        PREFIX_TOKENS.labels("computed").inc(len(ids) - reused)
        cache = DynamicCache(ddp_cache_data=prefix) if prefix else DynamicCache()
        hidden = self._forward(
            input_ids=torch.tensor([ids[reused:]], device=self.device),
            position_ids=torch.arange(reused, len(ids), device=self.device)[None],
            cache_position=torch.arange(reused, len(ids), device=self.device),
            past_key_values=cache,
        )
        self.prefix_cache.store(ids, [(layer.keys, layer.values) for layer in cache.layers])
        return cache, self._greedy(hidden[0, -1:])[0]

    def _join(self, job: Job, cache: DynamicCache, first: int) -> None:
        length = cache.get_seq_length()
        mask = torch.ones((1, length), dtype=torch.long, device=self.device)
        running = self._running
        if running is None:
            self._running = _Running(cache, mask, [job], [first], [length])
            return
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        width = max(running.width, length)
        grow, pad = width - running.width, width - length
        running.kv = [
            (
                torch.cat([_left_pad(bk, grow, 2), _left_pad(k, pad, 2)]),
                torch.cat([_left_pad(bv, grow, 2), _left_pad(v, pad, 2)]),
            )
            for (bk, bv), (k, v) in zip(running.kv, kv, strict=True)
        ]
        running.mask = torch.cat([_left_pad(running.mask, grow, 1), _left_pad(mask, pad, 1)])
        running.jobs.append(job)
        running.next_ids.append(first)
        running.lengths.append(length)

    @torch.inference_mode()
    def _decode_step(self) -> None:
        running = self._running
        started = time.monotonic()
        mask = torch.cat([running.mask, running.mask.new_ones((len(running.jobs), 1))], dim=1)
        hidden = self._forward(
            input_ids=torch.tensor([[i] for i in running.next_ids], device=self.device),
            attention_mask=mask,
            position_ids=torch.tensor([[n] for n in running.lengths], device=self.device),
            cache_position=torch.tensor([running.width], device=self.device),
            past_key_values=running.cache,
        )
        running.mask = mask
        running.lengths = [n + 1 for n in running.lengths]
        running.next_ids = self._greedy(hidden[:, -1])
        for job, token_id in zip(running.jobs, running.next_ids, strict=True):
            job.push(token_id)
        elapsed = time.monotonic() - started
        if elapsed > 0:
            TOKENS_PER_SECOND.set(len(running.jobs) / elapsed)

    @torch.inference_mode()
    def _speculative_step(self) -> None:
        """Prompt lookup decoding for a request decoded alone: the tokens that followed the
        last few tokens' earlier occurrence (in the prompt or the answer) are checked in one
        forward pass; the longest run the model itself would have chosen is kept, plus the
        model's own next token. Greedy, so the tokens are those of one step at a time."""
        running = self._running
        job = running.jobs[0]
        room = min(self.draft_tokens, job.max_tokens - len(job.token_ids) - 1)
        draft = _lookup_draft(job.prompt_ids + job.token_ids, room) if room > 0 else []
        if not draft:
            self._decode_step()
            return
        started = time.monotonic()
        width = running.width
        step = [running.next_ids[0], *draft]
        positions = torch.arange(running.lengths[0], running.lengths[0] + len(step))
        hidden = self._forward(
            input_ids=torch.tensor([step], device=self.device),
            attention_mask=running.mask.new_ones((1, width + len(step))),
            position_ids=positions[None].to(self.device),
            cache_position=torch.arange(width, width + len(step), device=self.device),
            past_key_values=running.cache,
        )
        chosen = self._greedy(hidden[0])
        accepted = 0
        while accepted < len(draft) and draft[accepted] == chosen[accepted]:
            accepted += 1
        kept = width + 1 + accepted  # the last token fed and the accepted draft
        running.kv = [(k[:, :, :kept], v[:, :, :kept]) for k, v in running.kv]
        running.mask = running.mask.new_ones((1, kept))
        running.lengths = [running.lengths[0] + 1 + accepted]
        running.next_ids = [chosen[accepted]]
        DRAFT_TOKENS.labels("accepted").inc(accepted)
        DRAFT_TOKENS.labels("rejected").inc(len(draft) - accepted)
        for token_id in chosen[: accepted + 1]:
            job.push(token_id)
        elapsed = time.monotonic() - started
        if elapsed > 0:
            TOKENS_PER_SECOND.set((accepted + 1) / elapsed)

    def _drop_leaving(self) -> None:
        running = self._running
        keep = [row for row, job in enumerate(running.jobs) if not job.leaving]
        for job in running.jobs:
            if job.cancelled.is_set():
                job.close()
        if not keep:
            self._running = None
            return
        if len(keep) == len(running.jobs):
            return
        index = torch.tensor(keep, device=self.device)
        mask = running.mask.index_select(0, index)
        # Columns that are padding in every remaining row are dropped.
        cut = int((mask.cumsum(dim=1) == 0).sum(dim=1).min())
        running.kv = [
            (k.index_select(0, index)[:, :, cut:], v.index_select(0, index)[:, :, cut:])
            for k, v in running.kv
        ]
        running.mask = mask[:, cut:]
        running.jobs = [running.jobs[row] for row in keep]
        running.next_ids = [running.next_ids[row] for row in keep]
        running.lengths = [running.lengths[row] for row in keep]
