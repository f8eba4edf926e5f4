"""LoRA fine-tuning of the answer model (peft), and the memorisation probe after it.

A leaf like the rest of inference/: no Django. The caller passes examples as (prompt,
target) pairs already built from the product's own prompt; this module only learns to write
the target after the prompt. The loss is on the target's tokens alone, and the output layer
(262k words wide) is applied only at those positions: at the prompt's positions it would
cost as much as the rest of the model and teach nothing. Training stops at ``max_steps`` or
``max_minutes``, whichever comes first, and keeps the adapter with the lowest validation
loss (examples from templates the training set does not use), so stopping early never loses
the best checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger(__name__)

ADAPTER_TARGETS = "all-linear"  # every projection of attention and MLP; not the output layer


@dataclass(frozen=True)
class TrainConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 2e-4
    warmup_steps: int = 20
    max_steps: int = 1000
    max_minutes: float = 60.0
    eval_every: int = 150
    seed: int = 0


@dataclass
class TrainResult:
    steps: int
    seconds: float
    best_step: int
    best_validation_loss: float | None
    stopped_by: str  # steps, time
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean train loss)
    validation: list[tuple[int, float]] = field(default_factory=list)
    device: str = "cpu"


def pick_training_device() -> tuple[str, torch.dtype]:
    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def load_for_training(model_dir: Path, config: TrainConfig) -> tuple[object, object, str]:
    device, dtype = pick_training_device()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="sdpa", local_files_only=True
    ).to(device)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=ADAPTER_TARGETS,
        task_type="CAUSAL_LM",
    )
    return tokenizer, get_peft_model(model, lora), device


def encode(tokenizer, prompt: str, target: str) -> tuple[list[int], int]:
    """The ids the engine would read (the prompt as the server encodes it) followed by the
    target's, and where the target starts."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    return prompt_ids + target_ids, len(prompt_ids)


def target_loss(model, ids: list[int], start: int, device: str) -> torch.Tensor:
    """Mean cross-entropy of the target tokens (positions ``start`` on)."""
    input_ids = torch.tensor([ids], device=device)
    body = model.get_base_model().get_decoder()
    hidden = body(input_ids=input_ids).last_hidden_state[0, start - 1 : len(ids) - 1]
    logits = model.get_base_model().get_output_embeddings()(hidden).float()
    return torch.nn.functional.cross_entropy(logits, input_ids[0, start:])


def train(
    *,
    model_dir: Path,
    examples: Sequence[tuple[str, str]],
    validation: Sequence[tuple[str, str]],
    out_dir: Path,
    config: TrainConfig,
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``examples`` and save the best one to ``out_dir``."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenizer, model, device = load_for_training(model_dir, config)
    train_ids = [encode(tokenizer, p, t) for p, t in examples]
    validation_ids = [encode(tokenizer, p, t) for p, t in validation]
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    total = max(1, min(config.max_steps, len(train_ids) * 50))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _learning_rate_factor(step, config.warmup_steps, total)
    )
    started = time.monotonic()
    result = TrainResult(0, 0.0, 0, None, "steps", device=device)
    best_state: dict[str, torch.Tensor] | None = None
    order: list[int] = []
    window: list[float] = []
    model.train()
    for step in range(1, total + 1):
        if not order:
            order = rng.sample(range(len(train_ids)), len(train_ids))
        ids, start = train_ids[order.pop()]
        loss = target_loss(model, ids, start, device)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(loss.item())
        result.steps = step
        if step % 10 == 0 or step == total:
            result.losses.append((step, sum(window) / len(window)))
            window = []
        out_of_time = time.monotonic() - started > config.max_minutes * 60
        if validation_ids and (step % config.eval_every == 0 or step == total or out_of_time):
            value = _validation_loss(model, validation_ids, device)
            result.validation.append((step, value))
            if result.best_validation_loss is None or value < result.best_validation_loss:
                result.best_validation_loss, result.best_step = value, step
                best_state = _adapter_state(model)
        if progress:
            progress(step, window[-1] if window else result.losses[-1][1])
        if out_of_time:
            result.stopped_by = "time"
            break
    if best_state is None:  # no validation set: the last state
        best_state, result.best_step = _adapter_state(model), result.steps
    _load_adapter_state(model, best_state)
    save_adapter(model, out_dir)
    result.seconds = time.monotonic() - started
    return result


def _learning_rate_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def _validation_loss(model, validation_ids, device: str) -> float:
    model.eval()
    try:
        losses = [float(target_loss(model, ids, start, device)) for ids, start in validation_ids]
    finally:
        model.train()
    return sum(losses) / len(losses)


def _adapter_state(model) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().clone()
        for name, tensor in model.state_dict().items()
        if "lora_" in name
    }


def _load_adapter_state(model, state: dict[str, torch.Tensor]) -> None:
    model.load_state_dict(state, strict=False)


def save_adapter(model, out_dir: Path) -> None:
    """The adapter's weights in bfloat16 (half the size; merged into float32 at load, the
    rounding is far below what the adapter changes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    from safetensors.torch import load_file, save_file

    weights = out_dir / "adapter_model.safetensors"
    tensors = {name: t.to(torch.bfloat16).contiguous() for name, t in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    tidy_adapter_dir(out_dir)


def tidy_adapter_dir(out_dir: Path) -> None:
    """Name the base model by its directory's name, not this machine's path, and drop the
    empty model card peft writes: the adapter directory is committed and served elsewhere."""
    config_path = out_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = Path(config["base_model_name_or_path"] or "").name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out_dir / "README.md").unlink(missing_ok=True)


def merged_model(model, adapter_dir: Path):
    """``model`` with the adapter's weights added into its own: no cost per token."""
    adapted = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    return adapted.merge_and_unload()


def adapter_name(adapter_dir: Path) -> str:
    try:
        record = json.loads((adapter_dir / "training.json").read_text())
        return str(record.get("name") or adapter_dir.name)
    except (OSError, ValueError):
        return adapter_dir.name


@torch.no_grad()
def complete(
    *, model_dir: Path, adapter_dir: Path | None, prompts: Sequence[str], max_tokens: int = 32
) -> list[str]:
    """Greedy continuations of ``prompts`` by the model (with the adapter merged), for the
    memorisation probe: what the model says when it is shown no sources."""
    device, dtype = pick_training_device()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, local_files_only=True).to(
        device
    )
    if adapter_dir is not None:
        model = merged_model(model, adapter_dir)
    model.eval()
    outputs = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=True).to(device)
        generated = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        outputs.append(
            tokenizer.decode(generated[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        )
    return outputs
