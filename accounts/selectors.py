from collections.abc import Iterable

from django.db.models import QuerySet

from accounts.models import Role, User


def user_role_ids(*, user: User) -> list[int]:
    """The user's role ids, read fresh from the database on every call.

    Never cached: a role change must apply to the very next request. Inactive or anonymous
    users hold no roles.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    return sorted(
        User.roles.through.objects.filter(user_id=user.pk).values_list("role_id", flat=True)
    )


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
