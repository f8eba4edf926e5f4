"""Documents a user cannot see never change that user's search results: no statistic learned
over the whole corpus (such as a stop list of "common" terms) may decide their ranking."""

import numpy as np
import psycopg
import pytest
from django.core.cache import cache
from django.db import connection

from accounts.selectors import user_scope
from knowledge import embeddings, index, services
from knowledge.ingestion.chunking import ChunkDraft
from knowledge.retrieval import chunk_search
from tests import factories
from tests.processes import admin_database_url

# Committed, so that the superuser's view of the statistics includes these rows.
pytestmark = pytest.mark.django_db(transaction=True)

TERM = "zephyr"
HIDDEN_CHUNKS = 600  # well past any "1% of the chunks and 500 of them" cut-off
QUERIES = (TERM, f"{TERM} allowance", f"hotel {TERM} costs", f"{TERM} bay parking level")


def _results(user) -> dict[str, list[tuple]]:
    scope = user_scope(user=user)
    return {
        query: [
            (hit.chunk_id, hit.score, hit.similarity)
            for hit in chunk_search(scope=scope, query=query, k=10)
        ]
        for query in QUERIES
    }


def _refresh_statistics() -> None:
    """What autovacuum does after a bulk load, and the expiry of every cached figure."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    cache.clear()


def _common_elements() -> list[str]:
    """The statistics as the superuser sees them: pg_stats hides a table's statistics from
    a role that row-level security binds on it, as the application's role is."""
    with psycopg.connect(admin_database_url()) as admin:
        row = admin.execute(
            "SELECT most_common_elems::text::text[] FROM pg_stats"
            " WHERE tablename = 'knowledge_chunk' AND attname = 'search_vector'"
            " AND schemaname = current_schema()"
        ).fetchone()
    return list(row[0] or []) if row else []


def _hidden_document_mentioning_the_term(*, roles) -> None:
    document = services.document_create(title="Board minutes", roles=list(roles))
    drafts = [
        ChunkDraft(
            position=i,
            text=f"Minute {i}: the {TERM} programme was discussed; hotel costs noted.",
            heading="",
            page=None,
            token_count=16,
        )
        for i in range(HIDDEN_CHUNKS)
    ]
    vector = embeddings.embed_passages([drafts[0].text])[0]
    index.document_replace_chunks(
        document_id=document.pk,
        drafts=drafts,
        vectors=np.repeat(vector[None, :], len(drafts), axis=0),
        content_hash="hidden",
    )


def test_hidden_documents_full_of_a_term_leave_a_users_results_unchanged():
    staff, board = factories.role("staff"), factories.role("board")
    factories.indexed_document(
        title="Zephyr allowance",
        text="The zephyr allowance is paid monthly to field engineers.",
        roles=[staff],
    )
    factories.indexed_document(
        title="Travel policy",
        text="Hotel costs are reimbursed up to 180 EUR per night in London.",
        roles=[staff],
    )
    factories.indexed_document(
        title="Parking", text="Zephyr bay parking is on level two.", roles=[staff]
    )
    factories.indexed_document(
        title="Canteen", text="The canteen serves lunch from noon.", roles=[staff]
    )
    reader = factories.user(roles=[staff])
    _refresh_statistics()
    alone = _results(reader)

    _hidden_document_mentioning_the_term(roles=[board])
    _refresh_statistics()
    crowded = _results(reader)

    assert TERM in _common_elements()  # the worlds really differ in corpus statistics
    assert all(alone[query] for query in QUERIES)
    assert crowded == alone  # same ids, order, scores and similarities
