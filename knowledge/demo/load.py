"""Loading a workspace module into the database through the ordinary services.

A workspace module has the shape of knowledge.demo: COMPANY, ROLES as (name, description)
pairs, USERS as dicts (username, first_name, last_name, email, roles, is_staff, optionally
manages and manages_users) and documents() returning items with filename, title, roles
and data. Loading is idempotent: roles are ensured, a username that exists is left as it
is, and a document whose bytes are already stored with the same roles is not queued again.

Unlike the package it lives in, this module needs Django: knowledge.demo stays importable
without it, and only the seeding commands import this.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import ModuleType

from django.core.files.base import ContentFile
from django.db import transaction

from accounts.policy import Actor
from accounts.selectors import roles_by_names, username_taken
from accounts.services import role_ensure, role_set_managers, user_create, user_set_grants
from knowledge.services import document_upload


def workspace_load(*, actor: Actor, workspace: ModuleType, passwords: dict[str, str]) -> int:
    """Create the workspace's roles, users (with ``passwords[username]``) and documents;
    returns how many documents were queued for ingestion (0 when all were stored)."""
    for name, description in workspace.ROLES:
        role_ensure(actor=actor, name=name, description=description)
    with transaction.atomic():
        for spec in workspace.USERS:
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
    for document in workspace.documents():
        _, created = document_upload(
            actor=actor,
            file=ContentFile(document.data, name=document.filename),
            roles=roles_by_names(names=document.roles),
            title=document.title,
        )
        queued += created
    return queued


def workspace_passwords(*, workspace: ModuleType, path: Path) -> dict[str, str]:
    """The passwords kept in ``path`` ("username password" lines), with a new random one
    for each of the workspace's users not listed yet; the file is rewritten, owner-only."""
    known: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if " " in line:
                username, password = line.split(" ", 1)
                known[username] = password
    for spec in workspace.USERS:
        known.setdefault(spec["username"], secrets.token_urlsafe(9))
    path.write_text("".join(f"{u} {p}\n" for u, p in known.items()))
    path.chmod(0o600)
    return known


def workspace_user_lines(*, workspace: ModuleType, passwords: dict[str, str]) -> list[str]:
    """One line per user: username, password, roles and any management grants."""
    width = max(15, *(len(spec["username"]) for spec in workspace.USERS))
    return [
        f"  {spec['username']:<{width}} {passwords[spec['username']]:<18} "
        f"{', '.join(spec['roles'])}{_grants(spec)}"
        for spec in workspace.USERS
    ]


def _grants(spec: dict) -> str:
    grants = [f"manages {', '.join(spec['manages'])}"] if spec.get("manages") else []
    if spec.get("manages_users"):
        grants.append("manages users")
    return f" ({'; '.join(grants)})" if grants else ""
