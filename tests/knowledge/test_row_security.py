"""Row-level security on knowledge_chunk: the second lock holds when the first is broken.

The suite connects as a plain role (tests/embedded_services.py), as deploy/ does, so these
tests run against the policies exactly as production enforces them. Each rule is tried by
breaking it: SQL with no role predicate, writes outside maintenance, settings that should
have ended with their block. DATABASE_ADMIN_URL (the cluster's superuser, which PostgreSQL
never binds) is the control: the same broken query through it does return the hidden rows.
"""

import re

import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.http import Http404

from accounts.selectors import user_scope
from knowledge import access, row_security
from knowledge.retrieval import chunk_search_with_plan, sql
from tests import factories
from tests.processes import admin_database_url

pytestmark = pytest.mark.django_db

FINANCE_TEXT = "# Results\n\nQ3 revenue was 4.2 million euros after the Falcon fleet deal."
LEGAL_TEXT = "# Case\n\nThe Falcon fleet case 2024-CV-0193 settles for 9 million euros."


@pytest.fixture
def corpus():
    finance, legal = factories.role("finance"), factories.role("legal")
    report = factories.indexed_document(title="Q3 report", text=FINANCE_TEXT, roles=[finance])
    case = factories.indexed_document(title="Case memo", text=LEGAL_TEXT, roles=[legal])
    return finance, legal, report, case


def _chunk_ids(sql_text: str, params=()) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(sql_text, params)
        return {row[0] for row in cursor.fetchall()}


def _ids_of(document) -> set[int]:
    return {c.pk for c in factories.stored_chunks(document=document)}


def test_the_application_connects_as_a_role_that_row_level_security_binds():
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)
        cursor.execute(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class"
            " WHERE relname = 'knowledge_chunk'"
        )
        assert cursor.fetchone() == (True, True)
        cursor.execute("SELECT policyname FROM pg_policies WHERE tablename = 'knowledge_chunk'")
        assert {r[0] for r in cursor.fetchall()} == {
            "chunk_read_in_scope",
            "chunk_insert",
            "chunk_update",
            "chunk_delete",
        }


def test_a_query_without_the_setting_sees_no_chunk_at_all(corpus):
    *_, report, case = corpus
    assert _ids_of(report) and _ids_of(case)
    assert _chunk_ids("SELECT id FROM knowledge_chunk") == set()
    with transaction.atomic():
        assert _chunk_ids("SELECT id FROM knowledge_chunk") == set()


def test_with_one_role_a_query_with_no_predicate_sees_only_that_roles_chunks(corpus):
    finance, legal, report, case = corpus
    with row_security.scoped([finance.pk]):
        assert _chunk_ids("SELECT id FROM knowledge_chunk") == _ids_of(report)
    with row_security.scoped([legal.pk]):
        assert _chunk_ids("SELECT id FROM knowledge_chunk") == _ids_of(case)
    with row_security.scoped([finance.pk, legal.pk]):
        assert _chunk_ids("SELECT id FROM knowledge_chunk") == _ids_of(report) | _ids_of(case)
    with row_security.scoped([]):
        assert _chunk_ids("SELECT id FROM knowledge_chunk") == set()


@pytest.mark.django_db(transaction=True)
def test_the_superuser_control_sees_the_rows_the_policy_hides(corpus):
    """The same query through a role the policies do not bind (the cluster's superuser)
    returns every committed row: the empty results above come from the policy, not from
    chunks that were never stored."""
    *_, report, case = corpus
    with psycopg.connect(admin_database_url()) as admin:
        ids = {row[0] for row in admin.execute("SELECT id FROM knowledge_chunk").fetchall()}
    assert ids == _ids_of(report) | _ids_of(case) and ids
    assert _chunk_ids("SELECT id FROM knowledge_chunk") == set()


def test_scope_and_maintenance_end_with_their_block_even_inside_a_transaction(corpus):
    finance, *_ = corpus
    with transaction.atomic():
        with row_security.scoped([finance.pk]):
            assert _chunk_ids("SELECT id FROM knowledge_chunk")
        assert _chunk_ids("SELECT id FROM knowledge_chunk") == set()
        with row_security.maintenance():
            assert _chunk_ids("SELECT id FROM knowledge_chunk")
        assert _chunk_ids("SELECT id FROM knowledge_chunk") == set()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE knowledge_chunk SET allowed_roles = %(roles)s::int[]",
        "DELETE FROM knowledge_chunk",
    ],
)
def test_updates_and_deletes_outside_maintenance_change_nothing(corpus, statement):
    finance, legal, *_ = corpus
    before = {c.pk: c.allowed_roles for c in factories.stored_chunks()}
    # Even a user's own scope does not make rows writable.
    with row_security.scoped([finance.pk, legal.pk]), connection.cursor() as cursor:
        cursor.execute(statement, {"roles": [legal.pk]})
        assert cursor.rowcount == 0
    assert {c.pk: c.allowed_roles for c in factories.stored_chunks()} == before


def test_an_insert_outside_maintenance_is_refused(corpus):
    finance, _, report, _ = corpus
    with (
        pytest.raises(ProgrammingError, match="row-level security"),
        transaction.atomic(),
        row_security.scoped([finance.pk]),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            """
            INSERT INTO knowledge_chunk (document_id, position, text, heading,
                token_count, content_hash, embedding, allowed_roles)
            SELECT document_id, 99, 'planted', '', 1, 'x', embedding, allowed_roles
            FROM knowledge_chunk WHERE document_id = %s LIMIT 1
            """,
            [report.pk],
        )
    assert all(c.text != "planted" for c in factories.stored_chunks())


def test_search_with_its_role_predicate_removed_still_returns_only_the_users_chunks(
    corpus, monkeypatch
):
    """Break the first lock: both legs of the hybrid search lose their ACL predicate."""
    finance, _, report, case = corpus
    predicate = (
        r"(c\.)?allowed_roles && %\(roles\)s::int\[\]"
        r"|arrayoverlap\(c\.allowed_roles, %\(roles\)s::int\[\]\)"
    )
    for name in ("_VECTOR_LEG", "_TEXT_LEG_NARROW", "_TEXT_LEG_BROAD"):  # every leg's SQL
        broken = re.sub(predicate, "TRUE", getattr(sql, name))
        assert broken != getattr(sql, name)
        assert "%(roles)s" not in broken, broken  # no role predicate left anywhere
        monkeypatch.setattr(sql, name, broken)
    scope = user_scope(user=factories.user(roles=[finance]))
    hits, plan = chunk_search_with_plan(scope=scope, query="Falcon fleet 2024-CV-0193", k=10)
    assert plan.name == "exact"
    assert {h.document_id for h in hits} == {report.pk}
    assert _ids_of(case).isdisjoint(h.chunk_id for h in hits)


def test_passage_reads_with_their_role_predicate_removed_still_answer_404(corpus, monkeypatch):
    finance, _, _, case = corpus
    hidden = min(_ids_of(case))
    scope = user_scope(user=factories.user(roles=[finance]))

    real_execute = psycopg.Cursor.execute

    def without_predicate(self, query, params=None, **kwargs):
        if isinstance(query, str) and "allowed_roles && %s::int[]" in query:
            query = re.sub(r"(c\.)?allowed_roles && %s::int\[\]", "%s::int[] IS NOT NULL", query)
        return real_execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", without_predicate)
    with pytest.raises(Http404):
        access.access_chunk(scope=scope, chunk_id=hidden)
    assert access.visible_chunk_ids(scope=scope, chunk_ids=[hidden]) == set()


def test_a_maintenance_write_must_keep_the_maintenance_role(corpus):
    """A row without role 0 would be invisible to maintenance itself (never cleaned up)."""
    finance, _, report, _ = corpus
    with (
        pytest.raises(ProgrammingError, match="row-level security"),
        row_security.maintenance(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE knowledge_chunk SET allowed_roles = %s::int[] WHERE document_id = %s",
            [[finance.pk], report.pk],
        )
    assert all(
        c.allowed_roles == [row_security.MAINTENANCE_ROLE, finance.pk]
        for c in factories.stored_chunks(document=report)
    )


def test_the_read_policy_is_served_by_the_role_index(corpus):
    """No OR in the read policy: the planner can use the GIN index on allowed_roles for it
    (an OR with a bypass setting would make every scoped read scan the whole table)."""
    finance, *_ = corpus
    with row_security.scoped([finance.pk]), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN SELECT id FROM knowledge_chunk")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "chunk_allowed_roles_gin" in plan, plan
