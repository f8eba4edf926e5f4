from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet

from accounts.models import Role, User

_MINTED_HERE = object()


@dataclass(frozen=True)
class Scope:
    """Who is asking and the roles they hold, read once at the start of a request.

    Retrieval, history re-checks, citations and the audit record of one request all take
    the same Scope, so they all use one role set. Only ``user_scope`` makes one.
    """

    user_id: int | None
    role_ids: tuple[int, ...]
    role_names: tuple[str, ...]
    _minted_by: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self._minted_by is not _MINTED_HERE:
            raise TypeError("a Scope comes only from accounts.selectors.user_scope")


def user_scope(*, user: User) -> Scope:
    """The user's roles, read fresh from the database: the one reader of a user's roles.

    Never cached across requests: a role change applies to the very next request. Inactive
    or anonymous users hold no roles.
    """
    return _scope(user, Role.objects.all())


def _scope(user: User, roles: QuerySet[Role]) -> Scope:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Scope(user_id=None, role_ids=(), role_names=(), _minted_by=_MINTED_HERE)
    roles = list(roles.filter(users=user).order_by("pk").values_list("pk", "name"))
    return Scope(
        user_id=user.pk,
        role_ids=tuple(pk for pk, _ in roles),
        role_names=tuple(sorted(name for _, name in roles)),
        _minted_by=_MINTED_HERE,
    )


def channel_scope(*, user: User, channel_role_ids: Iterable[int]) -> Scope:
    """The user's scope narrowed to ``channel_role_ids``: what may be answered to this user
    where everyone in a shared channel reads it. Channel roles only narrow, never add."""
    return _scope(user, Role.objects.filter(pk__in=list(channel_role_ids)))


def role_set_scope(*, role_names: Iterable[str]) -> Scope:
    """What a user holding exactly the named roles may see, with no user (the evaluation
    harness asks as a set of roles). LookupError names any role that does not exist."""
    names = sorted(set(role_names))
    roles = list(Role.objects.filter(name__in=names).order_by("pk").values_list("pk", "name"))
    missing = sorted(set(names) - {name for _, name in roles})
    if missing:
        raise LookupError(f"No role named {', '.join(map(repr, missing))}.")
    return Scope(
        user_id=None,
        role_ids=tuple(pk for pk, _ in roles),
        role_names=tuple(name for _, name in sorted(roles, key=lambda r: r[1])),
        _minted_by=_MINTED_HERE,
    )


def role_ids_held_unchecked(*, username: str = "", role_names: Iterable[str] = ()) -> set[int]:
    """The ids of the roles a user holds (or of the named roles), read straight from the
    tables without user_scope: the evaluation harness's independent check of what an asker
    may see. Not for answering requests (it ignores whether the user is active)."""
    if username:
        return set(Role.objects.filter(users__username=username).values_list("pk", flat=True))
    return set(Role.objects.filter(name__in=list(role_names)).values_list("pk", flat=True))


def username_taken(*, username: str) -> bool:
    return User.objects.filter(username=username).exists()


def role_list() -> QuerySet[Role]:
    return Role.objects.all()


def roles_by_names(*, names: Iterable[str]) -> list[Role]:
    """The roles with these names, in the given order; raises UnknownRoles naming the missing."""
    wanted = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    found = {r.name: r for r in Role.objects.filter(name__in=wanted)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise UnknownRoles(missing)
    return [found[n] for n in wanted]


class UnknownRoles(ValueError):
    def __init__(self, names: list[str]):
        self.names = names
        super().__init__("Unknown role" + ("s" if len(names) > 1 else "") + ": " + ", ".join(names))


def users_by_usernames(*, usernames: Iterable[str]) -> list[User]:
    """The users with these usernames; raises LookupError naming the unknown ones."""
    wanted = list(dict.fromkeys(u.strip() for u in usernames if u and u.strip()))
    found = {u.username: u for u in User.objects.filter(username__in=wanted)}
    missing = [u for u in wanted if u not in found]
    if missing:
        raise LookupError(
            "Unknown user" + ("s" if len(missing) > 1 else "") + ": " + ", ".join(missing)
        )
    return [found[u] for u in wanted]


def roles_held_by_every_active_user() -> dict[str, int]:
    """Role names (with ids) that every active user holds; none while there is no active
    user. What a model shared by everyone may learn is what all of them may read."""
    active = User.objects.filter(is_active=True).count()
    if not active:
        return {}
    held = (
        Role.objects.filter(users__is_active=True)
        .annotate(holders=Count("users", filter=Q(users__is_active=True), distinct=True))
        .filter(holders=active)
        .values_list("name", "pk")
    )
    return dict(held)


def active_users_without_role(*, role_name: str, limit: int = 3) -> list[str]:
    """Some active users who do not hold the role (for an error message)."""
    return list(
        User.objects.filter(is_active=True)
        .exclude(roles__name=role_name)
        .order_by("username")
        .values_list("username", flat=True)[:limit]
    )
