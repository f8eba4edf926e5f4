from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.policy import operator
from evaluation import holdout
from knowledge.demo.load import workspace_load, workspace_passwords, workspace_user_lines


class Command(BaseCommand):
    help = (
        "Load the held-out Norvik Water Authority workspace (roles, users, documents) through "
        "the ingestion pipeline, for `evaluate --set holdout`: measured on, never tuned on. "
        "Idempotent: what exists is kept. Passwords are generated once and kept in "
        "DATA_DIR/holdout-users.txt."
    )

    def handle(self, *args, **options):
        actor = operator(label="seed_holdout")
        path = settings.DATA_DIR / "holdout-users.txt"
        passwords = workspace_passwords(workspace=holdout, path=path)
        queued = workspace_load(actor=actor, workspace=holdout, passwords=passwords)
        self.stdout.write(
            f"Held-out workspace '{holdout.COMPANY}': {len(holdout.ROLES)} roles, "
            f"{len(holdout.USERS)} users, {queued} documents queued for ingestion."
        )
        self.stdout.write("Held-out users (username / password / roles):")
        for line in workspace_user_lines(workspace=holdout, passwords=passwords):
            self.stdout.write(line)
