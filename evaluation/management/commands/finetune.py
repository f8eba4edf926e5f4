"""`python manage.py finetune`: train a LoRA adapter for the answer model (RAFT-style)."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from tqdm import tqdm

from evaluation.finetune.runs import SOURCES, finetune_run
from evaluation.finetune.workspace import TrainingScopeError
from evaluation.models import FinetuneRun


class Command(BaseCommand):
    help = (
        "Build a training set from the product's own prompt (synthetic companies; with "
        "--source workspace also the documents every active user may read), train a LoRA "
        "adapter for the answer model on it (CUDA when torch sees a GPU, else CPU), probe it "
        "for memorisation and record the run. Serve the adapter with INFERENCE_ADAPTER=DIR, "
        "then compare `evaluate` runs on each gold set with and without it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--source", choices=SOURCES, default="synthetic")
        parser.add_argument(
            "--roles",
            default="",
            help="with --source workspace: comma-separated roles, each held by every active user",
        )
        parser.add_argument("--examples", type=int, default=1200, help="training examples")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--max-minutes",
            type=float,
            default=60.0,
            help="stop training after this long, keeping the best checkpoint so far",
        )
        parser.add_argument("--max-steps", type=int, help="default: one pass over the examples")
        parser.add_argument("--learning-rate", type=float, default=2e-4)
        parser.add_argument("--rank", type=int, default=16)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="build and write the training set (JSONL), print its path and counts; no training",
        )
        parser.add_argument("--out", type=Path, help="default: DATA_DIR/adapters/NAME")
        parser.add_argument("--name", default="", help="the adapter's name (default: answer-SEED)")
        parser.add_argument(
            "--include-evaluation-documents",
            action="store_true",
            help="with --source workspace: also read the demo's and the gold sets' documents "
            "(then evaluation measures memory, not skill)",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        if options["examples"] < 1:
            raise CommandError("--examples must be at least 1.")
        if options["max_minutes"] <= 0:
            raise CommandError("--max-minutes must be more than 0.")
        roles = [r.strip() for r in options["roles"].split(",") if r.strip()]
        if roles and options["source"] != "workspace":
            raise CommandError("--roles applies only to --source workspace.")
        name = options["name"] or f"answer-{options['seed']}"
        out_dir = (options["out"] or Path(settings.DATA_DIR) / "adapters" / name).resolve()
        bar = None
        if not options["dry_run"]:
            bar = tqdm(
                total=options["max_steps"] or options["examples"],
                desc=f"training {name}",
                unit="step",
                disable=options["no_progress"],
                file=self.stderr._out,
            )
        deadline = time.monotonic() + options["max_minutes"] * 60

        def progress(step: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.3f}", left=f"{max(0, deadline - time.monotonic()):.0f}s")
            bar.update()

        try:
            run = finetune_run(
                name=name,
                source=options["source"],
                role_names=roles,
                examples=options["examples"],
                seed=options["seed"],
                out_dir=out_dir,
                max_minutes=options["max_minutes"],
                max_steps=options["max_steps"],
                dry_run=options["dry_run"],
                include_evaluation_documents=options["include_evaluation_documents"],
                train_config={"learning_rate": options["learning_rate"], "rank": options["rank"]},
                progress=progress if bar else None,
            )
        except TrainingScopeError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if bar:
                bar.close()
        self._report(run)
        if run.status == FinetuneRun.Status.FINISHED:
            self._log_to_mlflow(run)

    def _log_to_mlflow(self, run: FinetuneRun) -> None:
        from evaluation import tracking

        if not tracking.mlflow_enabled():
            return
        try:
            mlflow_run_id = tracking.finetune_run_log_to_mlflow(run=run)
        except Exception as exc:  # the stored run and the adapter stay
            self.stderr.write(f"Not logged to MLflow: {exc}")
        else:
            self.stdout.write(f"Logged to MLflow as run {mlflow_run_id}.")

    def _report(self, run: FinetuneRun) -> None:
        counts = run.counts
        self.stdout.write(f"Training set: {Path(run.out_dir) / 'train.jsonl'}")
        self.stdout.write(f"  sha256 {run.training_set_sha256}")
        self.stdout.write(f"  training examples by kind: {_kinds(counts['train'])}")
        self.stdout.write(f"  validation examples by kind: {_kinds(counts['validation'])}")
        dropped = counts.get("dropped") or {}
        self.stdout.write(
            f"  dropped: {sum(dropped.values())}"
            + "".join(f"\n    {n} {why}" for why, n in sorted(dropped.items()))
        )
        if counts.get("workspace_documents"):
            self.stdout.write(f"  workspace documents read: {counts['workspace_documents']}")
        if run.status == FinetuneRun.Status.BUILT:
            self.stdout.write(f"Dry run: nothing trained (finetune run #{run.pk}).")
            return
        last = run.losses[-1][1] if run.losses else float("nan")
        first = run.losses[0][1] if run.losses else float("nan")
        self.stdout.write(
            f"Trained {run.steps} steps in {run.minutes:.1f} min on {run.config.get('device')} "
            f"(stopped by {run.config.get('stopped_by')}); training loss {first:.3f} -> "
            f"{last:.3f}; best validation loss "
            + (
                f"{min(v for _, v in run.validation):.3f} at step {run.best_step}"
                if run.validation
                else "n/a"
            )
        )
        for kind, entry in sorted(run.probe.items()):
            self.stdout.write(
                f"Memorisation probe, {kind}: {entry['repeated']} of {entry['asked']} came back"
            )
        page = reverse("admin:finetune-run", args=[run.pk])
        self.stdout.write(
            f"Adapter: {run.out_dir} (finetune run #{run.pk}, {page}). Serve it with "
            f"INFERENCE_ADAPTER={run.out_dir}, then run `manage.py evaluate` on each gold set."
        )


def _kinds(counts: dict) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"
