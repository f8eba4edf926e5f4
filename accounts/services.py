from collections.abc import Iterable

from django.db import transaction

from accounts.models import Role, User
from accounts.selectors import roles_by_names


@transaction.atomic
def role_create(*, name: str, description: str = "") -> Role:
    return Role.objects.create(name=name, description=description)


def role_ensure(*, name: str, description: str = "") -> Role:
    """The role with this name, created with ``description`` if it does not exist yet."""
    return Role.objects.get_or_create(name=name, defaults={"description": description})[0]


@transaction.atomic
def role_update(*, role: Role, name: str | None = None, description: str | None = None) -> Role:
    if name is not None:
        role.name = name
    if description is not None:
        role.description = description
    role.save()
    return role


@transaction.atomic
def role_delete(*, role: Role) -> None:
    """Delete a role. Chunks of documents that lose it are re-scoped in the same transaction."""
    from knowledge.index import documents_refresh_allowed_roles

    document_ids = list(role.documents.values_list("id", flat=True))
    role.delete()
    documents_refresh_allowed_roles(document_ids=document_ids)


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    email: str = "",
    role_names: Iterable[str] = (),
    is_active: bool = True,
    is_staff: bool = False,
    first_name: str = "",
    last_name: str = "",
) -> User:
    roles = roles_by_names(names=role_names)
    user = User.objects.create_user(
        username=username,
        password=password,
        email=email,
        is_active=is_active,
        is_staff=is_staff,
        first_name=first_name,
        last_name=last_name,
    )
    user.roles.set(roles)
    return user


@transaction.atomic
def user_update(
    *,
    user: User,
    role_names: Iterable[str] | None = None,
    email: str | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> User:
    if role_names is not None:
        user.roles.set(roles_by_names(names=role_names))
    if email is not None:
        user.email = email
    if is_active is not None:
        user.is_active = is_active
    if password is not None:
        user.set_password(password)
    user.save()
    return user
