"""`python manage.py evaluate [--set NAME] [--limit N] [--label TEXT] [--case ID ...]`."""

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from tqdm import tqdm

from evaluation import services
from evaluation.gold import DEFAULT_SET, GoldSetError, available_sets, load_gold_set
from evaluation.metrics import format_table


class Command(BaseCommand):
    help = (
        "Run a gold set through the real answer path (retrieval in each asker's scope, the "
        "model server, the grounding check), store the run and print its figures. "
        f"Sets: evaluation/sets/*.yaml (known: {', '.join(available_sets()) or 'none'}). "
        "Load the workspace a set asks in first: `seed_demo` for the demo sets, "
        "`seed_holdout` for holdout (held out: report its figures, never tune on it). "
        "Exits with an error when anything leaked."
    )

    def add_arguments(self, parser):
        parser.add_argument("--set", default=DEFAULT_SET, help="a set's name, or a YAML path")
        parser.add_argument("--limit", type=int, help="run only the first N cases")
        parser.add_argument("--case", action="append", default=[], help="run only this case id")
        parser.add_argument("--label", default="", help="a note to tell this run apart")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    def handle(self, *args, set, limit, case, label, no_progress, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        try:
            gold_set = load_gold_set(set)
        except GoldSetError as exc:
            raise CommandError(str(exc)) from None
        total = min(limit or len(gold_set.cases), len(case) or len(gold_set.cases))
        bar = tqdm(
            total=total,
            desc=f"evaluating {gold_set.name}",
            unit="case",
            disable=no_progress,
            file=self.stderr._out,
        )
        failed = 0

        def progress(result):
            nonlocal failed
            failed += bool(result.problems)
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()

        try:
            run = services.evaluation_run(
                gold_set=gold_set, label=label, case_ids=case, limit=limit, progress=progress
            )
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        self.stdout.write(
            format_table(
                run.metrics,
                title=f"Evaluation run #{run.pk}: set {gold_set.name!r}, {run.case_count} cases, "
                f"model {run.model or 'n/a'}, revision {run.revision[:12] or 'n/a'}",
            )
        )
        self._log_to_mlflow(run)
        failures = run.cases.exclude(problems=[]).order_by("position")
        if failures:
            self.stdout.write(f"\n{len(failures)} case(s) with problems:")
            for result in failures:
                problems = "; ".join(result.problems)
                self.stdout.write(f"  {result.case_id} ({result.asker}): {problems}")
        page = reverse("admin:evaluation-run", args=[run.pk])
        self.stdout.write(f"\nStored as run #{run.pk}: {page}")
        if run.metrics.get("leaks"):
            raise CommandError(f"{run.metrics['leaks']} leak(s): see the cases above.")

    def _log_to_mlflow(self, run) -> None:
        from evaluation import tracking

        if not tracking.mlflow_enabled():
            return
        try:
            mlflow_run_id = tracking.evaluation_run_log_to_mlflow(run=run)
        except Exception as exc:  # the stored run stays; the tracking server is optional
            self.stderr.write(f"Not logged to MLflow: {exc}")
        else:
            self.stdout.write(f"Logged to MLflow as run {mlflow_run_id}.")
