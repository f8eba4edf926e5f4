from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.policy import operator
from knowledge import demo
from knowledge.demo.load import workspace_load, workspace_passwords, workspace_user_lines


class Command(BaseCommand):
    help = (
        "Load the Veluna Air demo workspace (roles, users, documents) through the ingestion "
        "pipeline. Idempotent: what exists is kept. Demo passwords are generated once and "
        "kept in DATA_DIR/demo-users.txt."
    )

    def handle(self, *args, **options):
        actor = operator(label="seed_demo")
        passwords = workspace_passwords(workspace=demo, path=settings.DATA_DIR / "demo-users.txt")
        queued = workspace_load(actor=actor, workspace=demo, passwords=passwords)
        self.stdout.write(
            f"Demo workspace '{demo.COMPANY}': {len(demo.ROLES)} roles, {len(demo.USERS)} users, "
            f"{queued} documents queued for ingestion."
        )
        self.stdout.write("Demo users (username / password / roles):")
        for line in workspace_user_lines(workspace=demo, passwords=passwords):
            self.stdout.write(line)
