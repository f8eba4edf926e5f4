import secrets

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.policy import operator
from accounts.selectors import roles_by_names, username_taken
from accounts.services import role_ensure, role_set_managers, user_create, user_set_grants
from knowledge import demo
from knowledge.services import document_upload


class Command(BaseCommand):
    help = (
        "Load the Veluna Air demo workspace (roles, users, documents) through the ingestion "
        "pipeline. Idempotent: what exists is kept. Demo passwords are generated once and "
        "kept in DATA_DIR/demo-users.txt."
    )

    def handle(self, *args, **options):
        actor = operator(label="seed_demo")
        for name, description in demo.ROLES:
            role_ensure(actor=actor, name=name, description=description)
        passwords = self._passwords()
        with transaction.atomic():
            for spec in demo.USERS:
                if username_taken(username=spec["username"]):
                    continue
                user = user_create(
                    actor=actor,
                    username=spec["username"],
                    password=passwords[spec["username"]],
                    email=spec["email"],
                    first_name=spec["first_name"],
                    last_name=spec["last_name"],
                    role_names=spec["roles"],
                    is_staff=spec.get("is_staff", False),
                )
                for role in roles_by_names(names=spec.get("manages", [])):
                    role_set_managers(actor=actor, role=role, managers=[*role.managers.all(), user])
                if spec.get("manages_users"):
                    user_set_grants(actor=actor, user=user, manages_users=True)
        queued = 0
        for document in demo.documents():
            roles = roles_by_names(names=document.roles)
            _, created = document_upload(
                actor=actor,
                file=ContentFile(document.data, name=document.filename),
                roles=roles,
                title=document.title,
            )
            queued += created
        self.stdout.write(
            f"Demo workspace '{demo.COMPANY}': {len(demo.ROLES)} roles, {len(demo.USERS)} users, "
            f"{queued} documents queued for ingestion."
        )
        self.stdout.write("Demo users (username / password / roles):")
        for spec in demo.USERS:
            self.stdout.write(
                f"  {spec['username']:<15} {passwords[spec['username']]:<18} "
                f"{', '.join(spec['roles'])}{_grants(spec)}"
            )

    def _passwords(self) -> dict[str, str]:
        path = settings.DATA_DIR / "demo-users.txt"
        known = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if " " in line:
                    username, password = line.split(" ", 1)
                    known[username] = password
        for spec in demo.USERS:
            known.setdefault(spec["username"], secrets.token_urlsafe(9))
        path.write_text("".join(f"{u} {p}\n" for u, p in known.items()))
        path.chmod(0o600)
        return known


def _grants(spec: dict) -> str:
    grants = [f"manages {', '.join(spec['manages'])}"] if spec.get("manages") else []
    if spec.get("manages_users"):
        grants.append("manages users")
    return f" ({'; '.join(grants)})" if grants else ""
