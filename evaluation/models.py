from django.db import models


class EvaluationRun(models.Model):
    """One run of a gold set through the real answer path, with what it ran on."""

    class Status(models.TextChoices):
        RUNNING = "running"
        FINISHED = "finished"
        FAILED = "failed"

    label = models.CharField(max_length=200, blank=True)
    gold_set = models.CharField(max_length=100)
    gold_set_digest = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True)
    revision = models.CharField(max_length=64, blank=True)  # the code's git commit
    # Everything that shapes an answer: k, budgets, floors, inference URL and kind.
    settings = models.JSONField(default=dict)
    # The summary table (hit@k, MRR, accuracy, ...): evaluation.metrics.summarise.
    metrics = models.JSONField(default=dict)
    case_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.gold_set} {self.label}".strip()


class EvaluationCase(models.Model):
    """One gold case's result in one run: what was retrieved, said and cited, and how it
    scored. Texts of passages are kept as they were shown, so a later change to a document
    does not rewrite an old run."""

    class Outcome(models.TextChoices):
        ANSWERED = "answered"  # the model's own text passed the grounding check
        FALLBACK = "fallback"  # the grounding check replaced it with a quotation
        NOT_FOUND = "not_found"
        ERROR = "error"

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="cases")
    position = models.PositiveIntegerField()
    case_id = models.CharField(max_length=200)
    question = models.TextField()
    asker = models.CharField(max_length=300)
    tags = models.JSONField(default=list)
    expected_not_found = models.BooleanField(default=False)
    expected_documents = models.JSONField(default=list)  # file names (or titles)
    # What a right answer holds, as the gold set said when the run was made: its any-of
    # strings, and "matches /REGEX/" for a regular expression.
    expected_facts = models.JSONField(default=list)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    answer = models.TextField(blank=True)
    draft = models.TextField(blank=True)  # what the model wrote, before the check
    check_reason = models.CharField(max_length=300, blank=True)  # why the check stopped it
    error = models.TextField(blank=True)
    # [{rank, document_id, document, title, chunk_id, score, text}] as retrieved, best first.
    retrieved = models.JSONField(default=list)
    cited_documents = models.JSONField(default=list)  # file names, in citation order
    hit_rank = models.PositiveIntegerField(null=True, blank=True)  # first expected document
    correct = models.BooleanField(default=False)  # the right facts, or the right not-found
    model_correct = models.BooleanField(default=False)  # correct, in the model's own words
    grounded = models.BooleanField(default=False)
    fallback_used = models.BooleanField(default=False)
    citation_precision = models.FloatField(null=True, blank=True)
    citation_recall = models.FloatField(null=True, blank=True)
    leaks = models.JSONField(default=list)  # canaries or out-of-scope documents seen
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    total_ms = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list)  # why the case is not a pass, in words

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "case_id"], name="evaluation_case_once_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.case_id} ({self.outcome})"

    @property
    def passed(self) -> bool:
        return not self.problems


class FinetuneRun(models.Model):
    """One `manage.py finetune`: the training set it built (kept as JSONL, its sha256
    recorded), how training went, what the memorisation probe saw, and where the adapter is.
    Evaluation runs of the adapter name it in their model ("<base>+<adapter>")."""

    class Status(models.TextChoices):
        BUILT = "built"  # --dry-run: the training set only
        TRAINING = "training"
        FINISHED = "finished"
        FAILED = "failed"

    name = models.CharField(max_length=100)
    source = models.CharField(max_length=20)  # synthetic, workspace
    roles = models.JSONField(default=list)  # with --source workspace: the roles read
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    base_model = models.CharField(max_length=200, blank=True)
    revision = models.CharField(max_length=64, blank=True)
    seed = models.IntegerField(default=0)
    out_dir = models.CharField(max_length=500, blank=True)
    training_set_sha256 = models.CharField(max_length=64, blank=True)
    # Examples by kind (answer, follow_up, not_found) for training and validation, and the
    # examples dropped with why (a figure the gold passage does not hold, ...).
    counts = models.JSONField(default=dict)
    # Rank, learning rate, steps asked, minutes allowed, device: what shaped the adapter.
    config = models.JSONField(default=dict)
    steps = models.PositiveIntegerField(default=0)
    best_step = models.PositiveIntegerField(default=0)
    minutes = models.FloatField(default=0.0)
    losses = models.JSONField(default=list)  # [[step, mean training loss], ...]
    validation = models.JSONField(default=list)  # [[step, validation loss], ...]
    # What the trained model said with no sources: training passages' openings and
    # canaries from outside the training scope, and whether any came back.
    probe = models.JSONField(default=dict)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"
