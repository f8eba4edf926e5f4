"""Who may manage what: the one rule for users, roles, documents and audited reads.

The API, the admin console and the management commands all ask these functions (through
the services, which refuse with ``ManagementDenied``), so a right granted or refused here
is granted or refused everywhere. Rights only add up:

- superusers manage everything, and are the only ones who create or change staff and
  superusers, set another user's password, create, rename or delete roles and appoint
  role managers;
- user managers (active staff with ``accounts.manage_users``) create, change and
  deactivate non-staff users and grant them roles;
- role managers (``Role.managers``) upload into the roles they manage, and re-scope,
  replace and delete a document only when every role it has (and will have) is one they
  manage; they see management views of the documents in any role they manage;
- auditors (``accounts.audit_conversations``, granted to the user itself) read other
  users' conversations and answer audits and search as another user; each read is logged;
- chat platform workspaces (Slack): only superusers change them, since a workspace's
  channel roles open those roles' documents to everyone in a channel; unlinking a person's
  platform identity is managing that user.

Nothing else grants management: Django's model permissions (``add_document``,
``change_user``, ...), groups and ``is_staff`` alone grant none of it. The two grants above
are read from the user's own permissions (accounts.services.user_set_grants, logged), never
from groups, so every grant has an access-log entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied

from accounts.models import Role, User

_MINTED_HERE = object()


class ManagementDenied(PermissionDenied):
    """A management action the actor may not take (403, with the reason)."""


@dataclass(frozen=True)
class Actor:
    """The management rights of whoever acts, read once per request (never cached)."""

    user_id: int | None
    username: str
    is_superuser: bool
    manages_users: bool
    audits: bool
    managed_role_ids: frozenset[int]
    _minted_by: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self._minted_by is not _MINTED_HERE:
            raise TypeError("an Actor comes only from accounts.policy.actor_for or operator")

    @property
    def manages_documents(self) -> bool:
        return self.is_superuser or bool(self.managed_role_ids)

    @property
    def is_anyone(self) -> bool:
        """Whether this actor holds any management or audit right at all."""
        return self.is_superuser or self.manages_users or self.audits or self.manages_documents


def actor_for(*, user) -> Actor:
    """The user's management rights, read fresh. Inactive or anonymous users have none."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Actor(
            user_id=None,
            username=getattr(user, "username", "") or "anonymous",
            is_superuser=False,
            manages_users=False,
            audits=False,
            managed_role_ids=frozenset(),
            _minted_by=_MINTED_HERE,
        )
    grants = set(
        user.user_permissions.filter(
            content_type__app_label="accounts",
            codename__in=["manage_users", "audit_conversations"],
        ).values_list("codename", flat=True)
    )
    return Actor(
        user_id=user.pk,
        username=user.username,
        is_superuser=user.is_superuser,
        manages_users=user.is_superuser or (user.is_staff and "manage_users" in grants),
        audits=user.is_superuser or "audit_conversations" in grants,
        managed_role_ids=frozenset(Role.objects.filter(managers=user).values_list("pk", flat=True)),
        _minted_by=_MINTED_HERE,
    )


def operator(*, label: str) -> Actor:
    """Whoever runs a management command on the server: shell access is full access.

    Logged as ``system:<label>`` with no user.
    """
    return Actor(
        user_id=None,
        username=f"system:{label}",
        is_superuser=True,
        manages_users=True,
        audits=True,
        managed_role_ids=frozenset(),
        _minted_by=_MINTED_HERE,
    )


def _names(role_ids: Iterable[int]) -> str:
    return ", ".join(Role.objects.filter(pk__in=list(role_ids)).values_list("name", flat=True))


# Users


def can_create_user(actor: Actor, *, is_staff: bool = False, is_superuser: bool = False) -> bool:
    if is_staff or is_superuser:
        return actor.is_superuser
    return actor.manages_users


def can_manage_user(actor: Actor, target: User) -> bool:
    """Change the target's roles, email or active flag."""
    if actor.is_superuser:
        return True
    return actor.manages_users and not (target.is_staff or target.is_superuser)


def manageable_users(actor: Actor):
    """The users ``can_manage_user`` allows, as a queryset (for lists of what they own)."""
    if actor.is_superuser:
        return User.objects.all()
    if not actor.manages_users:
        return User.objects.none()
    return User.objects.filter(is_staff=False, is_superuser=False)


def can_set_password(actor: Actor, target: User) -> bool:
    return actor.is_superuser


def check_create_user(actor: Actor, *, is_staff: bool = False, is_superuser: bool = False):
    if not can_create_user(actor, is_staff=is_staff, is_superuser=is_superuser):
        if is_staff or is_superuser:
            raise ManagementDenied("Only a superuser can create staff or superusers.")
        raise ManagementDenied("You do not manage users.")


def check_manage_user(actor: Actor, target: User) -> None:
    if not can_manage_user(actor, target):
        if actor.manages_users:
            raise ManagementDenied("Only a superuser can change staff or superusers.")
        raise ManagementDenied("You do not manage users.")


def check_set_password(actor: Actor, target: User) -> None:
    if not can_set_password(actor, target):
        raise ManagementDenied("Only a superuser can set another user's password.")


# Roles


def can_manage_roles(actor: Actor) -> bool:
    """Create, rename and delete roles, and appoint their managers."""
    return actor.is_superuser


def check_manage_roles(actor: Actor) -> None:
    if not can_manage_roles(actor):
        raise ManagementDenied("Only a superuser can create, change or delete roles.")


def can_list_roles(actor: Actor) -> bool:
    return actor.is_superuser or actor.manages_users or actor.manages_documents


# Documents


def can_upload_into(actor: Actor, role_ids: Iterable[int]) -> bool:
    ids = set(role_ids)
    return bool(ids) and (actor.is_superuser or ids <= actor.managed_role_ids)


def check_upload_into(actor: Actor, role_ids: Iterable[int]) -> None:
    ids = set(role_ids)
    if not can_upload_into(actor, ids):
        unmanaged = ids - actor.managed_role_ids
        raise ManagementDenied(f"You do not manage the role(s): {_names(unmanaged)}.")


def can_view_document(actor: Actor, *, role_ids: Iterable[int], uploaded_by_id=None) -> bool:
    """See the document's management view: status, error, roles, file, chunks."""
    if actor.is_superuser:
        return True
    if actor.user_id is not None and uploaded_by_id == actor.user_id:
        return True
    return bool(set(role_ids) & actor.managed_role_ids)


def can_change_document(actor: Actor, *, role_ids: Iterable[int]) -> bool:
    """Rename, replace the file of, re-ingest or delete: every current role is managed."""
    ids = set(role_ids)
    if actor.is_superuser:
        return True
    return bool(ids) and ids <= actor.managed_role_ids


def check_change_document(actor: Actor, *, role_ids: Iterable[int]) -> None:
    if not can_change_document(actor, role_ids=role_ids):
        unmanaged = set(role_ids) - actor.managed_role_ids
        raise ManagementDenied(
            "You can only change documents whose every role you manage; you do not manage: "
            f"{_names(unmanaged)}."
        )


def check_rescope(actor: Actor, *, before: Iterable[int], after: Iterable[int]) -> None:
    check_change_document(actor, role_ids=before)
    check_upload_into(actor, after)


# Audited reads


def can_audit(actor: Actor) -> bool:
    return actor.audits


def check_audit(actor: Actor) -> None:
    if not can_audit(actor):
        raise ManagementDenied("Reading other users' conversations needs the audit permission.")


# Chat platforms


def can_manage_integrations(actor: Actor) -> bool:
    return actor.is_superuser


def check_manage_integrations(actor: Actor) -> None:
    if not can_manage_integrations(actor):
        raise ManagementDenied(
            "Only superusers change chat platform workspaces: channel roles open documents "
            "to everyone in a channel."
        )


def request_actor(request) -> Actor:
    """The Actor of a console request, read once per request (the admin asks many times)."""
    actor = getattr(request, "_management_actor", None)
    if actor is None or actor.user_id != getattr(request.user, "pk", None):
        actor = actor_for(user=request.user)
        request._management_actor = actor
    return actor
