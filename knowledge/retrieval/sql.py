"""The two ranked legs of a search, each with the ACL predicate inside its own SQL."""

from __future__ import annotations

import re

from knowledge.retrieval.hits import HIT_COLUMNS

# The inner query ranks ids only; text and titles are fetched for the n winners. The exact
# plan orders by "distance + 0", which hides the ORDER BY from the HNSW index: an exact scan
# of the ACL-filtered rows.
_VECTOR_LEG = f"""
    SELECT {HIT_COLUMNS}, v.distance
    FROM (
        SELECT id, embedding <=> %(q)s::vector AS distance
        FROM knowledge_chunk
        WHERE allowed_roles && %(roles)s::int[]
        ORDER BY {{order}}
        LIMIT %(n)s
    ) v
    JOIN knowledge_chunk c ON c.id = v.id
    JOIN knowledge_document d ON d.id = c.document_id
    WHERE c.allowed_roles && %(roles)s::int[]
"""

# Any query term may match (OR); the only stop words are the English configuration's fixed
# list. Nothing learned from the corpus (no "common terms" from column statistics) may shape
# the query: those figures count documents the user cannot see, so a term made common by
# hidden documents would change the user's ranking and reveal that it is common there.
# ts_rank_cd reads only the matched row. Chunks containing an identifier from the query (a
# part or case number) rank first, as such terms are rare and meant exactly.
_TEXT_LEG = f"""
    WITH tq AS (
        SELECT (SELECT string_agg(quote_literal(lexeme), ' | ')
                FROM unnest(to_tsvector('english', %(text)s)))::tsquery AS q,
               replace(plainto_tsquery('english', %(ids)s)::text, ' & ', ' | ')::tsquery AS ids
    )
    SELECT {HIT_COLUMNS}, ts_rank_cd(c.search_vector, tq.q) AS rank,
           c.search_vector @@ tq.ids AS identifier_match
    FROM tq, knowledge_chunk c JOIN knowledge_document d ON d.id = c.document_id
    WHERE c.allowed_roles && %(roles)s::int[] AND c.search_vector @@ tq.q
    ORDER BY identifier_match DESC, rank DESC, c.id
    LIMIT %(n)s
"""

# A token with a digit and a letter or separator ("HX-99731-Q", "2024-CV-0193", "Q3"),
# or a long number: the kind of term a user means exactly.
_IDENTIFIER = re.compile(r"(?=\S*\d)(?:\S*[A-Za-z/_-]\S*|\d{5,})")


def query_identifiers(query: str) -> list[str]:
    return [
        t.strip(".,;:!?()[]\"'")
        for t in query.split()
        if _IDENTIFIER.fullmatch(t.strip(".,;:!?()[]\"'"))
    ]


def set_hnsw_options(cursor, *, ef_search: int, iterative_scan: bool) -> None:
    """For the current transaction only (set_config(..., true) is SET LOCAL)."""
    cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])
    if iterative_scan:
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")


def vector_leg(cursor, *, vector: str, role_ids: list[int], n: int, exact: bool) -> list[tuple]:
    """Rows ordered by cosine distance (the last column), best first."""
    order = "(embedding <=> %(q)s::vector) + 0, id" if exact else "embedding <=> %(q)s::vector"
    cursor.execute(_VECTOR_LEG.format(order=order), {"q": vector, "roles": role_ids, "n": n})
    rows = cursor.fetchall()
    return sorted(rows, key=lambda r: (r[-1], r[0]))


def text_leg(cursor, *, text: str, role_ids: list[int], n: int) -> list[tuple]:
    """Rows ordered by identifier match, then ts_rank_cd; the last column is the match."""
    params = {
        "text": text,
        "ids": " ".join(query_identifiers(text)),
        "roles": role_ids,
        "n": n,
    }
    cursor.execute(_TEXT_LEG, params)
    return cursor.fetchall()


def cosine_distances(cursor, *, vector: str, chunk_ids: list[int]) -> dict[int, float]:
    """Distances of a few known chunks to the query: a k-row lookup, no scan."""
    if not chunk_ids:
        return {}
    cursor.execute(
        "SELECT id, embedding <=> %s::vector FROM knowledge_chunk WHERE id = ANY(%s)",
        [vector, chunk_ids],
    )
    return dict(cursor.fetchall())
