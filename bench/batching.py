"""Serving requests together: our engine and transformers' continuous batching, each against
decoding the same prompts one at a time, in the same run and the same process.

    .venv/bin/python bench/batching.py                 # our engine (transformers 4.57 here)
    /tmp/tf5/bin/python bench/batching.py              # transformers >= 5 continuous batching

The second needs a virtual environment with transformers 5 (this project pins 4.57.1;
sentence-transformers 5.1.2 requires < 5):
    python3.11 -m venv /tmp/tf5 && /tmp/tf5/bin/pip install torch==2.13.0 transformers==5.23.0

Eight answer prompts of 336 to 2,030 tokens (six past the 512-token sliding window) arrive
at once; 48 new tokens each, greedy. The baseline is transformers' generate on each prompt
alone, one after the other; the figure is wall time and the ratio to that baseline, and
whether every token equals the baseline's. Loads the packaged model from var/models.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from chatbot.answering.prompts import Source, build_prompt, token_counter  # noqa: E402

FACTS = [
    "Hotel costs are reimbursed up to {a} EUR per night in category {i} cities.",
    "Travel must be booked through the corporate portal at least {b} days in advance.",
    "Receipts are submitted in the expense tool within {b} days of the trip's end.",
    "The torque for the main landing gear axle nut is {a} Nm on aircraft {i}.",
]
QUESTIONS = [
    ("How much is a hotel in a category 2 city?", 0),
    ("What is the torque on aircraft 3?", 2),
    ("When are receipts due?", 5),
    ("How many days in advance is travel booked?", 9),
    ("What is the hotel limit in category 1 cities?", 14),
    ("What is the torque on aircraft 2?", 20),
    ("How long do I have to submit receipts?", 26),
    ("How much is a hotel in a category 3 city?", 30),
]


def prompts(model_dir: Path, tokenizer) -> list[list[int]]:
    counter = token_counter(model_dir)
    result = []
    for k, (question, sentences) in enumerate(QUESTIONS):
        sources = [
            Source(
                index=i,
                title=f"Policy part {i + 3 * k}",
                text=" ".join(
                    FACTS[(i + j + k) % len(FACTS)].format(a=60 + 13 * i + 5 * k + j, b=2 + j, i=i)
                    for j in range(max(sentences, 1))
                ),
            )
            for i in range(1, 4 if sentences else 2)
        ]
        text = build_prompt(
            question=question, sources=sources, kind="base", counter=counter, budget_tokens=4096
        ).text
        result.append(tokenizer(text)["input_ids"])
    return result


def one_at_a_time(model, prompt_ids, new_tokens, eos) -> list[list[int]]:
    out = []
    for ids in prompt_ids:
        with torch.inference_mode():
            generated = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        tokens = generated[0, len(ids) :].tolist()
        out.append(tokens[: next((i for i, t in enumerate(tokens) if t in eos), len(tokens))])
    return out


def our_engine(model_dir, prompt_ids, new_tokens, **options):
    from inference.engine import Engine

    engine = Engine(model_dir=model_dir, **options)
    engine.load()
    warm = engine.submit(prompt_ids[0][:40], max_tokens=4)
    list(warm.events())
    engine.prefix_cache = type(engine.prefix_cache)(engine.prefix_cache.capacity)  # cold
    started = time.perf_counter()
    jobs = [engine.submit(ids, max_tokens=new_tokens) for ids in prompt_ids]
    for job in jobs:
        list(job.events())
    elapsed = time.perf_counter() - started
    engine.stop()
    return elapsed, [job.token_ids for job in jobs]


def transformers_cb(model, prompt_ids, new_tokens, eos):
    from transformers import ContinuousBatchingConfig, GenerationConfig

    config = GenerationConfig(
        max_new_tokens=new_tokens, do_sample=False, eos_token_id=sorted(eos), pad_token_id=0
    )
    # Sized explicitly: left to itself it reserves ~90% of the machine's memory.
    manager = model.init_continuous_batching(
        generation_config=config,
        continuous_batching_config=ContinuousBatchingConfig(
            num_blocks=64, max_batch_tokens=1024, auto_switch_to_flash=False
        ),
    )
    manager.warmup()
    manager.start()
    started = time.perf_counter()
    ids = manager.add_requests(prompt_ids, max_new_tokens=new_tokens)
    results = {}
    while len(results) < len(ids):
        output = manager.get_result(timeout=1)
        if output is not None and output.is_finished():
            results[output.request_id] = output.generated_tokens
    elapsed = time.perf_counter() - started
    manager.stop(block=True, timeout=10)
    tokens = [results[i] for i in ids]
    return elapsed, [t[: next((k for k, x in enumerate(t) if x in eos), len(t))] for t in tokens]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, default=ROOT / "var" / "models" / "gemma3-270m")
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(min(os.cpu_count() or 1, 16))
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir, dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    eos = model.generation_config.eos_token_id
    eos = frozenset(eos if isinstance(eos, list) else [eos])
    prompt_ids = prompts(args.model_dir, tokenizer)
    one_at_a_time(model, prompt_ids[:1], 4, eos)  # warm up
    started = time.perf_counter()
    baseline = one_at_a_time(model, prompt_ids, args.new_tokens, eos)
    base_s = time.perf_counter() - started

    rows = [("generate, one prompt at a time", base_s, baseline)]
    if int(transformers.__version__.split(".")[0]) >= 5:
        seconds, tokens = transformers_cb(model, prompt_ids, args.new_tokens, eos)
        rows.append(("transformers continuous batching", seconds, tokens))
    else:
        for label, options in [
            ("our engine, all at once", {"draft_tokens": 0, "prefix_cache_size": 0}),
            ("our engine + prefix cache", {"draft_tokens": 0}),
            ("our engine + prefix cache + drafts", {}),
        ]:
            seconds, tokens = our_engine(args.model_dir, prompt_ids, args.new_tokens, **options)
            rows.append((label, seconds, tokens))
    lengths = [len(ids) for ids in prompt_ids]
    print(f"\ntransformers {transformers.__version__}, torch {torch.__version__}, ", end="")
    print(f"{torch.get_num_threads()} threads; {len(prompt_ids)} prompts of {min(lengths)}-")
    print(f"{max(lengths)} tokens ({sum(n > 512 for n in lengths)} past the window), ", end="")
    print(f"{args.new_tokens} new tokens each, greedy\n")
    print(f"{'':38}{'wall s':>8}{'vs one at a time':>18}{'tokens equal':>14}")
    for label, seconds, tokens in rows:
        same = sum(a == b for a, b in zip(tokens, baseline, strict=True))
        print(f"{label:38}{seconds:>8.1f}{base_s / seconds:>17.2f}x{same:>9}/{len(baseline)}")


if __name__ == "__main__":
    main()
