"""Changes to users and roles. Each takes the acting ``Actor`` (accounts.policy), refuses
with ManagementDenied what the actor may not do, and logs what it changed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.contrib.auth.models import Permission
from django.db import transaction

from accounts import policy
from accounts.access_log import Action, log_access
from accounts.models import Role, User
from accounts.policy import Actor
from accounts.selectors import roles_by_names
from accounts.tokens import tokens_revoke_all


class RoleInUse(Exception):
    """Deleting the role would leave documents with no role; ``documents`` names them."""

    def __init__(self, role: Role, documents: list[tuple[int, str]]):
        self.role = role
        self.documents = documents
        shown = ", ".join(f"{title} (#{pk})" for pk, title in documents[:10])
        more = f" and {len(documents) - 10} more" if len(documents) > 10 else ""
        super().__init__(
            f"Role '{role.name}' is the only role of {len(documents)} document(s): {shown}{more}."
            " Say which role they move to (move_to), or re-scope them first."
        )


def _role_state(role: Role) -> dict:
    return {"name": role.name, "description": role.description}


@transaction.atomic
def role_create(*, actor: Actor, name: str, description: str = "") -> Role:
    policy.check_manage_roles(actor)
    role = Role.objects.create(name=name, description=description)
    log_access(
        actor=actor,
        action=Action.ROLE_CREATED,
        target_type="role",
        target_id=role.pk,
        target_label=role.name,
        after=_role_state(role),
    )
    return role


def role_ensure(*, actor: Actor, name: str, description: str = "") -> Role:
    """The role with this name, created with ``description`` if it does not exist yet."""
    existing = Role.objects.filter(name=name).first()
    return existing or role_create(actor=actor, name=name, description=description)


@transaction.atomic
def role_update(
    *, actor: Actor, role: Role, name: str | None = None, description: str | None = None
) -> Role:
    """Rename or describe a role. Access is by id, so a rename changes no one's access."""
    policy.check_manage_roles(actor)
    before = _role_state(role)
    if name is not None:
        role.name = name
    if description is not None:
        role.description = description
    role.save()
    if _role_state(role) != before:
        log_access(
            actor=actor,
            action=Action.ROLE_UPDATED,
            target_type="role",
            target_id=role.pk,
            target_label=role.name,
            before=before,
            after=_role_state(role),
        )
    return role


@transaction.atomic
def role_delete(*, actor: Actor, role: Role, move_to: Role | None = None) -> None:
    """Delete a role. Its documents move to ``move_to`` (the role is replaced by it); without
    one, the deletion is refused (RoleInUse) when any document has no other role.

    Chunks are re-scoped in the same transaction, so nothing is ever invisible to everyone
    because a role went away.
    """
    from knowledge.index import documents_refresh_allowed_roles
    from knowledge.selectors import documents_only_in_role

    policy.check_manage_roles(actor)
    if move_to is not None and move_to.pk == role.pk:
        raise ValueError("A role cannot move its documents to itself.")
    role = Role.objects.select_for_update().get(pk=role.pk)
    document_ids = sorted(role.documents.values_list("id", flat=True))
    orphans = documents_only_in_role(role_id=role.pk)
    if orphans and move_to is None:
        raise RoleInUse(role, orphans)
    before = {
        **_role_state(role),
        "members": sorted(role.users.values_list("username", flat=True)),
        "managers": sorted(role.managers.values_list("username", flat=True)),
        "documents": document_ids,
    }
    if move_to is not None:
        from knowledge.models import DocumentRole

        DocumentRole.objects.bulk_create(
            [DocumentRole(document_id=d, role=move_to) for d in document_ids],
            ignore_conflicts=True,
        )
    log_access(
        actor=actor,
        action=Action.ROLE_DELETED,
        target_type="role",
        target_id=role.pk,
        target_label=role.name,
        before=before,
        after={"moved_to": move_to.name if move_to else None},
    )
    role.delete()
    documents_refresh_allowed_roles(document_ids=document_ids)


@transaction.atomic
def role_set_managers(*, actor: Actor, role: Role, managers: Sequence[User]) -> Role:
    """Appoint the role's managers (superusers only)."""
    policy.check_manage_roles(actor)
    before = sorted(role.managers.values_list("username", flat=True))
    role.managers.set(managers)
    after = sorted(u.username for u in managers)
    if before != after:
        log_access(
            actor=actor,
            action=Action.ROLE_MANAGERS_CHANGED,
            target_type="role",
            target_id=role.pk,
            target_label=role.name,
            before={"managers": before},
            after={"managers": after},
        )
    return role


def _user_state(user: User) -> dict:
    return {
        "roles": sorted(user.roles.values_list("name", flat=True)),
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "email": user.email,
    }


@transaction.atomic
def user_create(
    *,
    actor: Actor,
    username: str,
    password: str | None,
    email: str = "",
    role_names: Iterable[str] = (),
    is_active: bool = True,
    is_staff: bool = False,
    is_superuser: bool = False,
    first_name: str = "",
    last_name: str = "",
) -> User:
    """Create a user (staff and superusers only by a superuser). password None: unusable."""
    policy.check_create_user(actor, is_staff=is_staff, is_superuser=is_superuser)
    roles = roles_by_names(names=role_names)
    user = User.objects.create_user(
        username=username,
        password=password,
        email=email,
        is_active=is_active,
        is_staff=is_staff,
        is_superuser=is_superuser,
        first_name=first_name,
        last_name=last_name,
    )
    user.roles.set(roles)
    log_access(
        actor=actor,
        action=Action.USER_CREATED,
        target_type="user",
        target_id=user.pk,
        target_label=user.username,
        after=_user_state(user),
    )
    return user


def _update_action(before: dict, after: dict, password_set: bool) -> str:
    changed = {k for k in after if before.get(k) != after[k]} | (
        {"password"} if password_set else set()
    )
    if changed == {"roles"}:
        return Action.USER_ROLES_CHANGED
    if changed == {"password"}:
        return Action.USER_PASSWORD_SET
    if changed == {"is_active"}:
        return Action.USER_ACTIVATED if after["is_active"] else Action.USER_DEACTIVATED
    if changed & {"is_staff", "is_superuser"}:
        return Action.USER_PRIVILEGES_CHANGED
    return Action.USER_UPDATED


@transaction.atomic
def user_update(
    *,
    actor: Actor,
    user: User,
    role_names: Iterable[str] | None = None,
    email: str | None = None,
    is_active: bool | None = None,
    password: str | None = None,
    is_staff: bool | None = None,
    is_superuser: bool | None = None,
) -> User:
    """Change a user. A new password or a deactivation revokes the user's API tokens."""
    policy.check_manage_user(actor, user)
    if password is not None:
        policy.check_set_password(actor, user)
    if (is_staff is not None and is_staff != user.is_staff) or (
        is_superuser is not None and is_superuser != user.is_superuser
    ):
        policy.check_create_user(actor, is_staff=True)
    user = User.objects.select_for_update().get(pk=user.pk)
    before = _user_state(user)
    if role_names is not None:
        user.roles.set(roles_by_names(names=role_names))
    for name, value in (
        ("email", email),
        ("is_active", is_active),
        ("is_staff", is_staff),
        ("is_superuser", is_superuser),
    ):
        if value is not None:
            setattr(user, name, value)
    if password is not None:
        user.set_password(password)
    user.save()
    after = _user_state(user)
    if password is not None or not user.is_active:
        user_revoke_tokens(user=user)
    if after != before or password is not None:
        changed = [k for k in after if before[k] != after[k]]
        log_access(
            actor=actor,
            action=_update_action(before, after, password is not None),
            target_type="user",
            target_id=user.pk,
            target_label=user.username,
            before={k: before[k] for k in changed} | ({"password": "…"} if password else {}),
            after={k: after[k] for k in changed} | ({"password": "set"} if password else {}),
        )
    return user


@transaction.atomic
def users_grant_role(*, actor: Actor, users: Iterable[User], role: Role) -> int:
    """Give each user the role (one log entry each), all or none; returns how many gained it."""
    users = list(users)
    for user in users:
        policy.check_manage_user(actor, user)
    granted = 0
    for user in users:
        names = set(user.roles.values_list("name", flat=True))
        if role.name not in names:
            user_update(actor=actor, user=user, role_names=sorted(names | {role.name}))
            granted += 1
    return granted


MANAGEMENT_PERMISSIONS = {"manages_users": "manage_users", "audits": "audit_conversations"}


def _direct_grants(user: User) -> dict[str, bool]:
    held = set(user.user_permissions.values_list("codename", flat=True))
    return {name: codename in held for name, codename in MANAGEMENT_PERMISSIONS.items()}


@transaction.atomic
def user_set_grants(
    *, actor: Actor, user: User, manages_users: bool | None = None, audits: bool | None = None
) -> User:
    """Make a user a user manager and/or an auditor, or stop it (superusers only).

    A user manager must also be staff to use the grant (accounts.policy.actor_for).
    """
    policy.check_manage_roles(actor)
    before = _direct_grants(user)
    wanted = {"manages_users": manages_users, "audits": audits}
    for name, value in wanted.items():
        if value is None or value == before[name]:
            continue
        permission = Permission.objects.get(
            content_type__app_label="accounts", codename=MANAGEMENT_PERMISSIONS[name]
        )
        (user.user_permissions.add if value else user.user_permissions.remove)(permission)
    after = _direct_grants(user)
    if after != before:
        log_access(
            actor=actor,
            action=Action.USER_PRIVILEGES_CHANGED,
            target_type="user",
            target_id=user.pk,
            target_label=user.username,
            before=before,
            after=after,
        )
    return user


def user_revoke_tokens(*, user: User) -> None:
    tokens_revoke_all(user=user)
