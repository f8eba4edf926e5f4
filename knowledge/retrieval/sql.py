"""The two ranked legs of a search, each with the ACL predicate inside its own SQL."""

from __future__ import annotations

import re

from django.conf import settings

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
#
# Bounded: ranking every match made this leg, not the vector leg, the cost of a search at a
# million chunks (a three-word query matched 40% of them). The candidates are gathered in
# three capped stages, each reading at most %(cap)s visible matches in the table's physical
# order: chunks with the query's identifiers, chunks with all its terms, chunks with any of
# them. All-terms matches are the best ranked, so they are kept even when the any-term stage
# is cut short. The candidates are then ranked exactly as before; when no stage reaches the
# cap (any corpus where a query matches fewer chunks), the result equals the unbounded leg.
# The ACL predicate sits inside every stage, so a cap counts only rows the user may see and
# hidden documents can neither take a visible chunk's place nor change the order.
_TEXT_LEG = f"""
    WITH tq AS (
        SELECT (SELECT string_agg(quote_literal(lexeme), ' | ')
                FROM unnest(to_tsvector('english', %(text)s)))::tsquery AS q,
               plainto_tsquery('english', %(text)s) AS q_all,
               replace(plainto_tsquery('english', %(ids)s)::text, ' & ', ' | ')::tsquery AS ids
    ),
    matched AS (
        (SELECT c.id FROM tq, knowledge_chunk c
         WHERE %(has_ids)s AND c.allowed_roles && %(roles)s::int[] AND c.search_vector @@ tq.ids
         LIMIT %(cap)s)
        UNION
        (SELECT c.id FROM tq, knowledge_chunk c
         WHERE c.allowed_roles && %(roles)s::int[] AND c.search_vector @@ tq.q_all
         LIMIT %(cap)s)
        UNION
        (SELECT c.id FROM tq, knowledge_chunk c
         WHERE c.allowed_roles && %(roles)s::int[] AND c.search_vector @@ tq.q
         LIMIT %(cap)s)
    )
    SELECT {HIT_COLUMNS}, ts_rank_cd(c.search_vector, tq.q) AS rank,
           c.search_vector @@ tq.ids AS identifier_match
    FROM tq, matched m
    JOIN knowledge_chunk c ON c.id = m.id JOIN knowledge_document d ON d.id = c.document_id
    WHERE c.allowed_roles && %(roles)s::int[]
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


def set_hnsw_options(cursor, *, ef_search: int, max_scan_tuples: int | None = None) -> None:
    """For the current transaction only (set_config(..., true) is SET LOCAL). With
    max_scan_tuples the scan is iterative (pgvector >= 0.8), in relaxed order: the vector leg
    sorts its rows by distance itself."""
    cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])
    if max_scan_tuples is not None:
        cursor.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('hnsw.max_scan_tuples', %s, true)",
            [str(max_scan_tuples)],
        )


def vector_leg(cursor, *, vector: str, role_ids: list[int], n: int, exact: bool) -> list[tuple]:
    """Rows ordered by cosine distance (the last column), best first."""
    order = "(embedding <=> %(q)s::vector) + 0, id" if exact else "embedding <=> %(q)s::vector"
    cursor.execute(_VECTOR_LEG.format(order=order), {"q": vector, "roles": role_ids, "n": n})
    rows = cursor.fetchall()
    return sorted(rows, key=lambda r: (r[-1], r[0]))


def text_leg(
    cursor, *, text: str, role_ids: list[int], n: int, cap: int | None = None
) -> list[tuple]:
    """Rows ordered by identifier match, then ts_rank_cd; the last column is the match.
    At most ``cap`` visible matches per stage are ranked (RETRIEVAL_TEXT_MATCH_CAP)."""
    identifiers = " ".join(query_identifiers(text))
    params = {
        "text": text,
        "ids": identifiers,
        "has_ids": bool(identifiers),
        "roles": role_ids,
        "n": n,
        "cap": max(n, cap if cap is not None else settings.RETRIEVAL_TEXT_MATCH_CAP),
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
