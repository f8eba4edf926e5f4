"""The full-text leg ranks a bounded number of matches, whatever the number of chunks that
match, without losing the chunks that match every term or an identifier, and without a
hidden document taking a visible one's place under the cap."""

import json

import pytest
from django.db import connection

from knowledge import row_security
from knowledge.retrieval import sql
from tests import factories

pytestmark = pytest.mark.django_db

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


def _leg(world, query: str, *, cap: int, n: int = 20):
    with row_security.scoped(world["roles"]), connection.cursor() as cursor:
        rows = sql.text_leg(cursor, text=query, role_ids=world["roles"], n=n, cap=cap)
    return rows


def _documents(rows) -> list[int]:
    return [row[1] for row in rows]


def _ranked_rows(world, query: str, *, cap: int) -> int:
    """How many candidate rows the leg ranked, read from PostgreSQL's own plan."""
    identifiers = " ".join(sql.query_identifiers(query))
    params = {"text": query, "ids": identifiers, "has_ids": bool(identifiers),
              "roles": world["roles"], "n": 20, "cap": cap}  # fmt: skip
    with row_security.scoped(world["roles"]), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql._TEXT_LEG, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    # The rows that reach the ranking's sort (the first under the LIMIT) are the candidates
    # the stages gathered.
    ranking = next(n for n in nodes(plan[0]["Plan"]) if n["Node Type"] == "Sort")
    return int(ranking["Plans"][0]["Actual Rows"])


def test_the_leg_ranks_at_most_three_caps_of_rows_however_many_match(world):
    assert _ranked_rows(world, QUERY, cap=CAP) <= 3 * CAP
    assert _ranked_rows(world, QUERY, cap=10_000) == FILLER + 2  # all visible matches


def test_a_chunk_with_every_term_is_kept_when_the_any_term_stage_is_cut_short(world):
    rows = _leg(world, QUERY, cap=CAP)
    # The first CAP any-term matches in storage order are all filler; the all-terms stage
    # still brings the target, which then ranks first as it would unbounded.
    assert _documents(rows)[0] == world["target"].pk
    assert len(rows) == 20


def test_an_identifier_is_found_past_the_cap_and_ranks_first(world):
    rows = _leg(world, IDENTIFIER_QUERY, cap=CAP)
    assert _documents(rows)[0] == world["part"].pk
    assert rows[0][-1] is True  # the identifier_match column


def test_hidden_matches_never_use_up_the_cap(world):
    rows = _leg(world, QUERY, cap=1)
    documents = set(_documents(rows))
    assert world["target"].pk in documents
    assert all(world["roles"][0] in row[7] for row in rows)


@pytest.mark.parametrize("query", [QUERY, "travel notes", "allowance"])
def test_below_the_cap_the_ranking_is_the_unbounded_one(world, query):
    bounded = [row[0] for row in _leg(world, query, cap=1000)]
    with row_security.scoped(world["roles"]), connection.cursor() as cursor:
        cursor.execute(UNBOUNDED, {"text": query, "roles": world["roles"], "n": 20})
        unbounded = [row[0] for row in cursor.fetchall()]
    assert bounded == unbounded and bounded
