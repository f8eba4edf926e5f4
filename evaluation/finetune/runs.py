"""`manage.py finetune`'s service: build the training set, train, probe, record.

The training set is the product's own prompt (chatbot.answering.prompts with the answer
settings in force) over synthetic passages and, with ``source="workspace"``, the
organisation's documents every active user may read (evaluation.finetune.workspace refuses
anything else). Validation examples come from template families the training set never
uses, so the kept checkpoint is the one that generalises best, not the one that memorised
best. Everything that shaped the adapter is written beside it (training.json) and stored as
a FinetuneRun; the training set itself is kept as JSONL with its sha256.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from chatbot.answering.prompts import TokenCounter, token_counter
from evaluation.finetune.examples import ExampleSet, PromptSettings, build_examples
from evaluation.finetune.probe import probe_report, probes
from evaluation.finetune.synthetic import Passage, families, synthetic_passages
from evaluation.finetune.workspace import workspace_passages
from evaluation.models import FinetuneRun
from evaluation.services import code_revision
from knowledge import demo

logger = logging.getLogger(__name__)

SOURCES = ("synthetic", "workspace")
# Template families held out of training: validation asks what the adapter never saw asked.
VALIDATION_FAMILIES = ("budget", "service-levels")
VALIDATION_EXAMPLES = 32  # each checkpoint's validation costs a forward pass of each
PROBES_PER_KIND = 12
RECORD_FILE = "training.json"


@dataclass(frozen=True)
class TrainingSet:
    train: ExampleSet
    validation: ExampleSet
    path: Path
    sha256: str
    passages: list[Passage]
    documents: list[str]  # workspace documents read (names)

    @property
    def counts(self) -> dict:
        return {
            "train": self.train.counts,
            "validation": self.validation.counts,
            "dropped": dict(self.train.dropped + self.validation.dropped),
            "passages": len(self.passages),
            "workspace_documents": len(self.documents),
        }


def prompt_settings() -> PromptSettings:
    return PromptSettings(
        evidence_chars=settings.ANSWER_EVIDENCE_CHARS,
        max_sources=settings.ANSWER_MAX_SOURCES,
        best_last=settings.ANSWER_BEST_SOURCE_LAST,
        budget_tokens=settings.INFERENCE_PROMPT_BUDGET,
    )


def training_set_build(
    *,
    source: str,
    role_names: Sequence[str] = (),
    examples: int,
    seed: int,
    out_dir: Path,
    counter: TokenCounter,
    include_evaluation_documents: bool = False,
) -> TrainingSet:
    """Build and write the training and validation sets (train.jsonl, validation.jsonl).
    TrainingScopeError when ``role_names`` are not every active user's."""
    if source not in SOURCES:
        raise ValueError(f"--source must be one of {', '.join(SOURCES)}, not {source!r}")
    passages = synthetic_passages(seed=seed)
    documents: list[str] = []
    if source == "workspace":
        extra, read = workspace_passages(
            role_names=role_names, include_evaluation_documents=include_evaluation_documents
        )
        passages += extra
        documents = [d.name for d in read]
    train_families = [f for f in families() if f not in VALIDATION_FAMILIES] + ["workspace"]
    prompt = prompt_settings()
    train = build_examples(
        passages, count=examples, seed=seed, counter=counter, prompt=prompt, families=train_families
    )
    validation = build_examples(
        passages,
        count=min(VALIDATION_EXAMPLES, max(8, examples // 20)),
        seed=seed + 1,
        counter=counter,
        prompt=prompt,
        families=VALIDATION_FAMILIES,
    )
    sha256 = train.write_jsonl(out_dir / "train.jsonl")
    validation.write_jsonl(out_dir / "validation.jsonl")
    return TrainingSet(train, validation, out_dir / "train.jsonl", sha256, passages, documents)


def finetune_run(
    *,
    name: str,
    source: str,
    role_names: Sequence[str] = (),
    examples: int,
    seed: int,
    out_dir: Path,
    max_minutes: float,
    max_steps: int | None = None,
    dry_run: bool = False,
    include_evaluation_documents: bool = False,
    train_config: dict | None = None,
    progress: Callable[[int, float], None] | None = None,
    model_dir: Path | None = None,
) -> FinetuneRun:
    """Build the training set, then (unless ``dry_run``) train the adapter into ``out_dir``,
    probe it for memorisation and record everything. The FinetuneRun is stored first and
    marked failed with the error if anything after that fails."""
    from inference import prepare

    model_dir = model_dir or prepare.prepared_model_dir(
        data_dir=settings.DATA_DIR, override=settings.INFERENCE_MODEL
    )
    counter = token_counter(model_dir)
    built = training_set_build(
        source=source,
        role_names=role_names,
        examples=examples,
        seed=seed,
        out_dir=out_dir,
        counter=counter,
        include_evaluation_documents=include_evaluation_documents,
    )
    run = FinetuneRun.objects.create(
        name=name,
        source=source,
        roles=sorted(role_names),
        status=FinetuneRun.Status.BUILT if dry_run else FinetuneRun.Status.TRAINING,
        base_model=model_dir.name,
        revision=code_revision(),
        config={"examples": examples, "max_minutes": max_minutes},
        seed=seed,
        out_dir=str(out_dir),
        training_set_sha256=built.sha256,
        counts=built.counts,
    )
    if dry_run:
        run.finished_at = timezone.now()
        run.save(update_fields=["finished_at"])
        return run
    try:
        _train_and_probe(
            run,
            built=built,
            model_dir=model_dir,
            counter=counter,
            max_minutes=max_minutes,
            max_steps=max_steps,
            train_config=train_config or {},
            progress=progress,
        )
    except Exception as exc:
        run.status = FinetuneRun.Status.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        run.finished_at = timezone.now()
        run.save()
        raise
    return run


def _train_and_probe(
    run: FinetuneRun,
    *,
    built: TrainingSet,
    model_dir: Path,
    counter: TokenCounter,
    max_minutes: float,
    max_steps: int | None,
    train_config: dict,
    progress,
) -> None:
    from inference import finetune

    config = finetune.TrainConfig(
        max_minutes=max_minutes,
        max_steps=max_steps or len(built.train.examples),
        seed=run.seed,
        **train_config,
    )
    out_dir = Path(run.out_dir)
    started = time.monotonic()
    result = finetune.train(
        model_dir=model_dir,
        examples=[(e.prompt, e.target) for e in built.train.examples],
        validation=[(e.prompt, e.target) for e in built.validation.examples],
        out_dir=out_dir,
        config=config,
        progress=progress,
    )
    probe_set = probes(
        passages=built.passages,
        canaries=restricted_canaries(),
        counter=counter,
        count=PROBES_PER_KIND,
        seed=run.seed,
    )
    report = probe_report(
        probe_set,
        lambda prompts: finetune.complete(
            model_dir=model_dir, adapter_dir=out_dir, prompts=prompts
        ),
    )
    run.config = {
        **run.config,
        **asdict(config),
        "device": result.device,
        "stopped_by": result.stopped_by,
    }
    run.steps, run.best_step = result.steps, result.best_step
    run.minutes = round((time.monotonic() - started) / 60, 2)
    run.losses = [list(point) for point in result.losses]
    run.validation = [list(point) for point in result.validation]
    run.probe = report
    run.status = FinetuneRun.Status.FINISHED
    run.finished_at = timezone.now()
    run.save()
    (out_dir / RECORD_FILE).write_text(json.dumps(training_record(run), indent=2) + "\n")


def restricted_canaries() -> list[tuple[str, str]]:
    """(question, answer) pairs from the demo's role-restricted documents: the adapter never
    saw them, and must not say them."""
    return [(question, fact) for question, (fact, role) in demo.FACTS.items() if role != "everyone"]


def training_record(run: FinetuneRun) -> dict:
    """What reproduces and explains an adapter, written beside it as training.json."""
    return {
        "name": run.name,
        "base_model": run.base_model,
        "source": run.source,
        "roles": run.roles,
        "revision": run.revision,
        "seed": run.seed,
        "training_set_sha256": run.training_set_sha256,
        "counts": run.counts,
        "config": run.config,
        "steps": run.steps,
        "best_step": run.best_step,
        "minutes": run.minutes,
        "losses": run.losses,
        "validation": run.validation,
        "probe": run.probe,
        "command": (
            f"python manage.py finetune --name {run.name} --source {run.source} "
            f"--examples {run.config.get('examples')} "
            f"--seed {run.seed} --max-minutes {run.config.get('max_minutes')}"
            + (f" --roles {','.join(run.roles)}" if run.roles else "")
        ),
    }
