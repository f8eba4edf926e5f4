import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import User
from accounts.policy import operator
from accounts.services import user_create


class Command(BaseCommand):
    help = "Create the 'admin' superuser on first start (ADMIN_PASSWORD, else a generated one)."

    def handle(self, *args, **options):
        if User.objects.filter(username="admin").exists():
            self.stdout.write("Superuser 'admin' already exists.")
            return
        password = settings.ADMIN_PASSWORD or secrets.token_urlsafe(12)
        user_create(
            actor=operator(label="ensure_admin"),
            username="admin",
            password=password,
            is_staff=True,
            is_superuser=True,
        )
        if settings.ADMIN_PASSWORD:
            self.stdout.write(
                self.style.SUCCESS("Created superuser 'admin' (password from ADMIN_PASSWORD).")
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(f"Created superuser 'admin' with password: {password}")
            )
