"""The full-text leg ranks a bounded number of matches, whatever the number of chunks that
match, without losing the chunks that match every term or an identifier, and without a
hidden document taking a visible one's place under the cap."""

import json

import pytest
from django.db import connection

from knowledge import row_security
from knowledge.retrieval import sql
from tests import factories

# Committed and flushed after each test: its thousands of bulk-copied chunks, rolled back,
# would stay in the HNSW graph as dead entries until a vacuum, and the vector searches of
# later tests in the session would wade through them.
pytestmark = pytest.mark.django_db(transaction=True)

CAP = 20
FILLER = 300  # visible chunks matching one query term, stored before the ones that matter
QUERY = "Lisbon travel allowance"
IDENTIFIER_QUERY = "travel rules for part HX-99731-Q"

# The leg as it was before the bound: every visible match ranked.
UNBOUNDED = """
    WITH tq AS (SELECT (SELECT string_agg(quote_literal(lexeme), ' | ')
                        FROM unnest(to_tsvector('english', %(text)s)))::tsquery AS q)
    SELECT c.id FROM tq, knowledge_chunk c
    WHERE c.allowed_roles && %(roles)s::int[] AND c.search_vector @@ tq.q
    ORDER BY ts_rank_cd(c.search_vector, tq.q) DESC, c.id
    LIMIT %(n)s
"""


def _copies(title: str, count: int) -> None:
    """count more copies of the document's chunk, stored after it (bulk, no embedding)."""
    with row_security.maintenance(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO knowledge_chunk (document_id, position, text, heading, page,
                                         token_count, content_hash, embedding, allowed_roles)
            SELECT c.document_id, c.position + g, c.text || ' ' || g, c.heading, c.page,
                   c.token_count, c.content_hash, c.embedding, c.allowed_roles
            FROM knowledge_chunk c JOIN knowledge_document d ON d.id = c.document_id,
                 generate_series(1, %s) g
            WHERE d.title = %s
            """,
            [count, title],
        )
        assert cursor.rowcount == count


@pytest.fixture
def world():
    reader, other = factories.role("reader"), factories.role("other")
    # Stored first: chunks the reader may not see that match every term and the identifier.
    factories.indexed_document(
        title="Hidden", text="Lisbon travel allowance for part HX-99731-Q.", roles=[other]
    )
    _copies("Hidden", FILLER)
    factories.indexed_document(title="Filler", text="Travel notes.", roles=[reader])
    _copies("Filler", FILLER)
    target = factories.indexed_document(
        title="Target", text="The Lisbon travel allowance is 180 euros a day.", roles=[reader]
    )
    part = factories.indexed_document(
        title="Part", text="Part HX-99731-Q is torqued to 40 Nm.", roles=[reader]
    )
    return {"roles": [reader.pk], "target": target, "part": part}


@pytest.fixture(params=[0.01, 1.0], ids=["narrow scope", "broad scope"])
def share(request):
    """The scope's share of the table, which picks the leg's access path (never its rows)."""
    return request.param


def _leg(world, query: str, *, cap: int, share: float = 1.0, n: int = 20):
    with row_security.scoped(world["roles"]), connection.cursor() as cursor:
        return sql.text_leg(cursor, text=query, role_ids=world["roles"], n=n, cap=cap, share=share)


def _documents(rows) -> list[int]:
    return [row[1] for row in rows]


def _ranked_rows(world, query: str, *, cap: int, share: float) -> int:
    """How many candidate rows the leg ranked, read from PostgreSQL's own plan."""
    with row_security.scoped(world["roles"]), connection.cursor() as cursor:
        params = sql.text_leg_params(cursor, text=query, role_ids=world["roles"], n=20, cap=cap)
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql.text_leg_sql(share), params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    # The candidates every stage gathered reach one sort (the union's, or the n best's).
    sorts = [n for n in nodes(plan[0]["Plan"]) if n["Node Type"] == "Sort"]
    return max(int(sort["Plans"][0]["Actual Rows"]) for sort in sorts)


@pytest.mark.parametrize("share", [0.01, 1.0])  # either access path
def test_the_leg_ranks_at_most_three_caps_of_rows_however_many_match(world, share):
    assert _ranked_rows(world, QUERY, cap=CAP, share=share) <= 3 * CAP
    # Uncapped: all 302 visible matches, the target once per stage that found it (two).
    assert _ranked_rows(world, QUERY, cap=10_000, share=share) == FILLER + 3


def test_a_chunk_with_every_term_is_kept_when_the_any_term_stage_is_cut_short(world, share):
    rows = _leg(world, QUERY, cap=CAP, share=share)
    # The first CAP any-term matches in storage order are all filler; the all-terms stage
    # still brings the target, which then ranks first as it would unbounded.
    assert _documents(rows)[0] == world["target"].pk
    assert len(rows) == 20


def test_an_identifier_is_found_past_the_cap_and_ranks_first(world, share):
    rows = _leg(world, IDENTIFIER_QUERY, cap=CAP, share=share)
    assert _documents(rows)[0] == world["part"].pk
    assert rows[0][-1] is True  # the identifier_match column


def test_hidden_matches_never_use_up_the_cap(world, share):
    rows = _leg(world, QUERY, cap=1, share=share)
    documents = set(_documents(rows))
    assert world["target"].pk in documents
    assert all(world["roles"][0] in row[7] for row in rows)


@pytest.mark.parametrize("query", [QUERY, "travel notes", "allowance"])
def test_below_the_cap_the_ranking_is_the_unbounded_one(world, query, share):
    bounded = [row[0] for row in _leg(world, query, cap=1000, share=share)]
    with row_security.scoped(world["roles"]), connection.cursor() as cursor:
        cursor.execute(UNBOUNDED, {"text": query, "roles": world["roles"], "n": 20})
        unbounded = [row[0] for row in cursor.fetchall()]
    assert bounded == unbounded and bounded


def test_both_access_paths_pick_the_same_capped_candidates(world):
    """The path depends on how much of the table the scope sees; the rows must not."""
    for query in (QUERY, IDENTIFIER_QUERY, "travel notes"):
        for cap in (1, CAP, 1000):
            assert _leg(world, query, cap=cap, share=0.01) == _leg(world, query, cap=cap, share=1.0)
