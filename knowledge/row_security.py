"""The second lock on passages: PostgreSQL row-level security on knowledge_chunk.

The first lock is the role predicate every chunk query carries in its own SQL
(knowledge.retrieval, knowledge.access). Migration 0004 adds a second one in the database,
so that a chunk query that forgot its predicate still returns nothing it should not:

- reads see the rows whose ``allowed_roles`` overlap ``app.user_roles``, which a scoped read
  sets for its own transaction (``scoped``); without the setting they see no row at all
  (the policy fails closed);
- writes, and the few reads that are not on a user's behalf (the index's own bookkeeping,
  a document's management view, the audit trail's hashes), happen only inside
  ``maintenance()``, which sets ``app.chunk_maintenance`` for its transaction and reads
  with the scope ``{0}``: every stored row carries role 0 (``MAINTENANCE_ROLE``, which no
  user has), so the read policy needs no OR and the GIN index on allowed_roles serves it.

Both settings are transaction-local (``set_config(..., true)``) and are restored when the
block ends, so nothing carries over to the next use of a pooled connection.

Row-level security binds only a role that is neither a superuser nor BYPASSRLS; the table
is FORCE'd, so the owner that runs the migrations is bound too. The test suite and deploy/
connect as such a role (config.db_roles); the embedded ``make run`` cluster connects as its
superuser, for which only the first lock holds. The settings are a guard against a query
that forgets its predicate, not against SQL injection: SQL that can run ``set_config`` can
set them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import connection, transaction

ROLES_SETTING = "app.user_roles"
MAINTENANCE_SETTING = "app.chunk_maintenance"


# Role ids start at 1; 0 is in every stored row's allowed_roles and in no user's scope.
MAINTENANCE_ROLE = 0


def roles_literal(role_ids: Iterable[int]) -> str:
    """A PostgreSQL int[] literal: ``{1,4,9}``."""
    return "{" + ",".join(str(int(r)) for r in sorted(set(role_ids))) + "}"


def stored_roles(role_ids: Iterable[int]) -> list[int]:
    """A chunk's allowed_roles as stored: the document's roles and MAINTENANCE_ROLE."""
    return sorted({int(r) for r in role_ids} | {MAINTENANCE_ROLE})


@contextmanager
def _settings(values: dict[str, str]) -> Iterator[None]:
    with transaction.atomic(), connection.cursor() as cursor:
        previous = {}
        for name, value in values.items():
            # One round trip: the old value is read before the new one is set (left to right).
            cursor.execute(
                "SELECT current_setting(%s, true), set_config(%s, %s, true)", [name, name, value]
            )
            previous[name] = cursor.fetchone()[0] or ""
        yield
        # On an exception the savepoint's rollback restores the settings by itself.
        for name, value in previous.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


@contextmanager
def scoped(role_ids: Iterable[int]) -> Iterator[None]:
    """A transaction in which chunk reads see only rows overlapping these roles."""
    roles = {int(r) for r in role_ids} - {MAINTENANCE_ROLE}
    with _settings({ROLES_SETTING: roles_literal(roles)}):
        yield


@contextmanager
def maintenance() -> Iterator[None]:
    """A transaction in which chunk rows may be written and read whole. For the index's
    writes and for reads that are not on a user's behalf; never for a user's search."""
    with _settings({MAINTENANCE_SETTING: "on", ROLES_SETTING: roles_literal([MAINTENANCE_ROLE])}):
        yield
