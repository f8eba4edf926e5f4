"""Run as ``python -m tests.faults.seed`` on the fault stack's environment: migrate its
database, then make the user the fault tests act as (reads and uploads into "staff") and an
API token; prints them as one JSON line."""

import json
import secrets

import django


def main() -> None:
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from accounts.models import Role, User
    from accounts.tokens import token_issue

    staff = Role.objects.get_or_create(name="staff")[0]
    password = secrets.token_urlsafe(12)
    user = User.objects.create_user(username="fault-tester", password=password)
    user.roles.set([staff])
    user.managed_roles.set([staff])
    _, key = token_issue(user=user, name="fault tests")
    print(json.dumps({"username": user.username, "password": password, "token": key}))


if __name__ == "__main__":
    main()
