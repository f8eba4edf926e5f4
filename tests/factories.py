import itertools

from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.tokens import token_issue
from knowledge import services
from knowledge.models import Document

_seq = itertools.count(1)


def role(name: str | None = None) -> Role:
    name = name or f"role-{next(_seq)}"
    return Role.objects.get_or_create(name=name)[0]


def user(
    *,
    roles=(),
    username: str | None = None,
    is_staff: bool = False,
    is_superuser: bool = False,
    manages=(),
    password="pw-Secret-123",
):
    account = User.objects.create_user(
        username=username or f"user{next(_seq)}",
        password=password,
        is_staff=is_staff or is_superuser,
        is_superuser=is_superuser,
    )
    account.roles.set(roles)
    account.managed_roles.set(manages)
    return account


def superuser(username: str | None = None) -> User:
    return user(username=username or f"admin{next(_seq)}", is_superuser=True)


def grant(account: User, *codenames: str) -> User:
    """Add model permissions (e.g. manage_users, add_document) directly to a user."""
    account.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=account.pk)  # a fresh object: Django caches permissions


def indexed_document(*, title: str, text: str, roles) -> Document:
    document = services.document_create(title=title, roles=list(roles))
    services.document_index_text(document=document, text=text)
    document.refresh_from_db()
    return document


def api_client(account: User | None = None) -> APIClient:
    client = APIClient()
    if account is not None:
        _, key = token_issue(user=account, name="tests")
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def stored_chunks(**filters) -> list:
    """The chunk rows the database holds (ordered by document and position), read past
    row-level security: tests inspect what is stored, which no user-facing read may do.
    Reading knowledge.models.Chunk directly would see no row at all (the policy fails
    closed), so a test asserting that chunks are gone would pass for the wrong reason."""
    from knowledge import row_security
    from knowledge.models import Chunk

    with row_security.maintenance():
        return list(Chunk.objects.filter(**filters).select_related("document"))


def chunk_roles(chunk) -> list[int]:
    """A stored chunk's roles without the maintenance role every row carries
    (knowledge.row_security.MAINTENANCE_ROLE)."""
    from knowledge.row_security import MAINTENANCE_ROLE

    return sorted(set(chunk.allowed_roles) - {MAINTENANCE_ROLE})


HOTEL_POLICY = (
    "Hotel costs are reimbursed up to 140 EUR per night in Germany and 180 EUR per night in "
    "London. Breakfast is included."
)


def travel_policy(*, roles) -> Document:
    """The travel policy many answer tests ask about: the hotel cap per city."""
    return indexed_document(title="Travel policy", text=HOTEL_POLICY, roles=roles)
