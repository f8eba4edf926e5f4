"""Generation latency and throughput: over HTTP (the inference server) and in-process.

    python bench/inference.py [--url http://127.0.0.1:8001] [--runs 5] [--new-tokens 64]

Without --url (or INFERENCE_URL) it starts `python -m inference.server` on a free port and
stops it afterwards. The prompt is a typical RAG prompt: 4 sources, ~800 tokens.
Prints figures; asserts nothing. Target on the 2-core CPU: time to first token <= 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from chatbot.answering.prompts import Source, build_prompt, token_counter
from inference.client import InferenceClient
from inference.prepare import prepared_model_dir

ROOT = Path(__file__).resolve().parents[1]
TARGET_PROMPT_TOKENS = 800
SENTENCES = [
    "Hotel costs are reimbursed up to {a} EUR per night in category {i} cities.",
    "Travel must be booked through the corporate portal at least {b} days in advance.",
    "Receipts are submitted in the expense tool within {b} days of the trip's end.",
    "Flights under {c} hours are booked in economy class; longer flights may use premium economy.",
    "Per diem allowances for meals are {a} EUR for full days and half of that for travel days.",
]


@dataclass(frozen=True)
class Run:
    ttft_s: float
    total_s: float
    completion_tokens: int

    @property
    def decode_tokens_per_s(self) -> float:
        decode_time = self.total_s - self.ttft_s
        return (self.completion_tokens - 1) / decode_time if decode_time > 0 else 0.0


def rag_prompt(model_dir: Path, variant: int = 0) -> tuple[str, int]:
    """A ~800-token answer prompt; each variant has other figures in its sources, so two
    variants share the instructions and examples but not their sources (as two questions
    do), and the server's prefix cache cannot serve one from the other."""
    counter = token_counter(model_dir)
    sentences_per_source = 1
    while True:
        sources = [
            Source(
                index=i,
                title=f"Travel policy, part {i}",
                text=" ".join(
                    SENTENCES[(j + variant) % len(SENTENCES)].format(
                        a=90 + 10 * i + j + 7 * variant, b=7 + j + variant, c=4 + i, i=i
                    )
                    for j in range(sentences_per_source)
                ),
            )
            for i in range(1, 5)
        ]
        prompt = build_prompt(
            question="How much is reimbursed per night for a hotel in a category 3 city?",
            sources=sources,
            kind="base",
            counter=counter,
            budget_tokens=4096,
        )
        if prompt.prompt_tokens >= TARGET_PROMPT_TOKENS:
            return prompt.text, prompt.prompt_tokens
        sentences_per_source += 1


def http_run(client: InferenceClient, prompt: str, new_tokens: int) -> Run:
    started = time.perf_counter()
    first = None
    stream = client.stream(prompt, max_tokens=new_tokens)
    for _delta in stream:
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return Run(first or total, total, stream.completion.completion_tokens)


def concurrent_runs(client, prompts, new_tokens, concurrency) -> tuple[list[Run], float]:
    """``concurrency`` requests at once, each with its own prompt."""
    barrier = threading.Barrier(concurrency)

    def one(n):
        barrier.wait()
        return http_run(client, prompts[n % len(prompts)], new_tokens)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        runs = list(pool.map(one, range(concurrency)))
    return runs, time.perf_counter() - started


class _TokenTimes:
    """A token-level streamer for generate: the time each new token came out."""

    def __init__(self):
        self.prompt_seen = False
        self.times: list[float] = []

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.times.extend([time.perf_counter()] * value.numel())

    def end(self) -> None:
        pass


def in_process_runs(model_dir: Path, prompt: str, new_tokens: int, repeats: int) -> list[Run]:
    """transformers' generate in this process, batch 1, timed token by token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    runs = []
    for attempt in range(repeats + 1):  # the first one warms up
        streamer = _TokenTimes()
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                streamer=streamer,
            )
        if attempt:
            first, last = streamer.times[0], streamer.times[-1]
            runs.append(Run(first - started, last - started, len(streamer.times)))
    return runs


def start_server(model_dir: Path, server_args: list[str]) -> tuple[str, subprocess.Popen]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "inference.server", "--port", str(port)),
            *("--log-level", "warning", "--model-dir", str(model_dir)),
            *server_args,
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit("the inference server exited before it was ready")
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("the inference server was not ready within 300 s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("INFERENCE_URL"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument(
        "--server-args",
        default="",
        help='options for the server this script starts, e.g. "--draft-tokens 0"',
    )
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DATA_DIR") or ROOT / "var")
    parser.add_argument("--model", default=os.environ.get("INFERENCE_MODEL", ""))
    args = parser.parse_args()
    # Turn SIGTERM (e.g. from `timeout`) into an exit that still stops the server we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    model_dir = prepared_model_dir(data_dir=args.data_dir.resolve(), override=args.model)
    prompt, prompt_tokens = rag_prompt(model_dir)
    levels = [int(n) for n in args.concurrency.split(",")]
    # Distinct prompts: runs 1..N sequentially, then each concurrent level its own set.
    variants = [rag_prompt(model_dir, v)[0] for v in range(1, args.runs + 2 + sum(levels))]
    process = None
    url = args.url
    if not url:
        url, process = start_server(model_dir, args.server_args.split())
    try:
        client = InferenceClient(base_url=url, read_timeout=600)
        http_run(client, variants.pop(), 4)  # make sure nothing cold is measured
        sequential = [http_run(client, variants.pop(), args.new_tokens) for _ in range(args.runs)]
        concurrent = {}
        for n in levels:
            prompts, variants = variants[:n], variants[n:]
            concurrent[n] = concurrent_runs(client, prompts, args.new_tokens, n)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    local = (
        []
        if args.skip_in_process
        else in_process_runs(model_dir, prompt, args.new_tokens, repeats=min(args.runs, 3))
    )
    print(f"\nserver options: {args.server_args or '(defaults)'}")
    report(url, model_dir, prompt_tokens, args.new_tokens, sequential, concurrent, local)


def report(url, model_dir, prompt_tokens, new_tokens, sequential, concurrent, local) -> None:
    ttft = statistics.median(r.ttft_s for r in sequential)
    decode = statistics.median(r.decode_tokens_per_s for r in sequential)
    print(f"\ninference server {url}  model {model_dir.name}  cpu threads {os.cpu_count()}")
    print(f"prompt {prompt_tokens} tokens, {new_tokens} new tokens, greedy\n")
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'HTTP time to first token, median of ' + str(len(sequential)):<44}{ttft:>10.2f} s")
    print(f"{'HTTP decode speed, median':<44}{decode:>8.1f} tok/s")
    if local:
        local_ttft = statistics.median(r.ttft_s for r in local)
        local_decode = statistics.median(r.decode_tokens_per_s for r in local)
        print(f"{'in-process time to first token, median':<44}{local_ttft:>10.2f} s")
        print(f"{'in-process decode speed, median':<44}{local_decode:>8.1f} tok/s")
        print(f"{'server/in-process TTFT ratio':<44}{ttft / local_ttft:>11.2f}x")
        print(f"{'server/in-process decode ratio':<44}{decode / local_decode:>11.2f}x")
    print(f"{'target: HTTP TTFT <= 1.5 s':<44}{'met' if ttft <= 1.5 else 'NOT met':>12}")
    if local:
        met = "met" if decode / local_decode >= 0.9 else "NOT met"
        print(f"{'target: server decode >= 90% of in-process':<44}{met:>12}")
    print()
    header = (
        f"{'concurrent':>10}{'wall s':>9}{'total tok/s':>13}{'TTFT p50 s':>12}{'TTFT p95 s':>12}"
    )
    print(header + f"{'vs 1 user':>11}")
    rates = {}
    for level, (runs, wall) in concurrent.items():
        tokens = sum(r.completion_tokens for r in runs)
        ttfts = [r.ttft_s for r in runs]
        rates[level] = tokens / wall
        ratio = f"{rates[level] / rates[1]:>10.2f}x" if 1 in rates else ""
        print(
            f"{level:>10}{wall:>9.1f}{tokens / wall:>13.1f}"
            f"{percentile(ttfts, 0.5):>12.2f}{percentile(ttfts, 0.95):>12.2f}{ratio}"
        )


if __name__ == "__main__":
    main()
