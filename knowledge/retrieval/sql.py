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
# The leg's tsqueries, and its settings for the rest of the transaction, in one round trip.
_TEXT_QUERIES = """
    SELECT (SELECT string_agg(quote_literal(lexeme), ' | ')
            FROM unnest(to_tsvector('english', %(text)s)))::tsquery::text,
           plainto_tsquery('english', %(text)s)::text,
           replace(plainto_tsquery('english', %(ids)s)::text, ' & ', ' | '),
           set_config('synchronize_seqscans', 'off', true),
           set_config('max_parallel_workers_per_gather', '0', true)
"""
# {roles} and {any_term} are stage predicates; their function forms (arrayoverlap,
# ts_match_vq) mean the same but cannot use an index, which steers the access path (below).
# Identifiers are rare by nature: that stage always reads the text index and tests the roles.
_STAGE_COLUMNS = """
    c.id, ts_rank_cd(c.search_vector, %(q)s::tsquery) AS rank,
    c.search_vector @@ %(ids)s::tsquery AS identifier_match
"""
# Each stage ranks the rows it read (they are in hand); only the n best are then joined to
# their text and document, by primary key.
_TEXT_LEG = f"""
    WITH matched AS (
        (SELECT {_STAGE_COLUMNS} FROM knowledge_chunk c
         WHERE %(has_ids)s AND arrayoverlap(c.allowed_roles, %(roles)s::int[])
           AND c.search_vector @@ %(ids)s::tsquery
         LIMIT %(cap)s)
        UNION
        (SELECT {_STAGE_COLUMNS} FROM knowledge_chunk c
         WHERE {{roles}} AND c.search_vector @@ %(q_all)s::tsquery
         LIMIT %(cap)s)
        UNION
        (SELECT {_STAGE_COLUMNS} FROM knowledge_chunk c
         WHERE {{roles}} AND {{any_term}}
         LIMIT %(cap)s)
    ),
    best AS (
        SELECT * FROM matched ORDER BY identifier_match DESC, rank DESC, id LIMIT %(n)s
    )
    SELECT {HIT_COLUMNS}, b.rank, b.identifier_match
    FROM best b
    JOIN knowledge_chunk c ON c.id = b.id JOIN knowledge_document d ON d.id = c.document_id
    WHERE c.allowed_roles && %(roles)s::int[]
    ORDER BY b.identifier_match DESC, b.rank DESC, c.id
"""
# PostgreSQL costs a GIN bitmap scan far below what it takes for a term in half the table
# (98 ms for 600k matches at 1M chunks, where it planned a few milliseconds). So the planner
# of this module, which knows how much of the table the scope sees, picks the path:
# - a narrow scope (NARROW_SCOPE_SHARE or less of the chunks) reads its own rows through the
#   roles index and tests the terms on each: the any-term stage may not use the text index
#   (the all-terms stage may: an AND of terms is rarely common);
# - a broad scope reads the text index (or the table in order) and tests the roles on each
#   row: no stage may use the roles index, whose bitmap alone is most of the table.
NARROW_SCOPE_SHARE = 0.25
_ROLES_INDEXED = "c.allowed_roles && %(roles)s::int[]"
_ROLES_TESTED = "arrayoverlap(c.allowed_roles, %(roles)s::int[])"
_ANY_TERM_INDEXED = "c.search_vector @@ %(q)s::tsquery"
_ANY_TERM_TESTED = "ts_match_vq(c.search_vector, %(q)s::tsquery)"
_TEXT_LEG_NARROW = _TEXT_LEG.format(roles=_ROLES_INDEXED, any_term=_ANY_TERM_TESTED)
_TEXT_LEG_BROAD = _TEXT_LEG.format(roles=_ROLES_TESTED, any_term=_ANY_TERM_INDEXED)

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
    cursor,
    *,
    text: str,
    role_ids: list[int],
    n: int,
    cap: int | None = None,
    share: float = 1.0,
) -> list[tuple]:
    """Rows ordered by identifier match, then ts_rank_cd; the last column is the match.
    At most ``cap`` visible matches per stage are ranked (RETRIEVAL_TEXT_MATCH_CAP); share
    is the part of the table the scope sees (planner.SearchPlan.share), which picks the
    access path, never the rows."""
    params = text_leg_params(cursor, text=text, role_ids=role_ids, n=n, cap=cap)
    if params is None:  # nothing but stop words: no term to match
        return []
    cursor.execute(text_leg_sql(share), params)
    return cursor.fetchall()


def text_leg_sql(share: float) -> str:
    return _TEXT_LEG_NARROW if share <= NARROW_SCOPE_SHARE else _TEXT_LEG_BROAD


def _lexemes(tsquery: str) -> set[str]:
    return set(re.findall(r"'((?:[^']|'')*)'", tsquery))


def text_leg_params(
    cursor, *, text: str, role_ids: list[int], n: int, cap: int | None = None
) -> dict | None:
    """The leg's tsqueries, as literals the planner can see, and its session settings."""
    identifiers = " ".join(query_identifiers(text))
    # The settings: each stage reads matches in physical order whichever path is taken (a
    # bitmap scan of either index, or the table in order), never from a synchronized scan's
    # moving start nor from parallel workers' interleaving, so the capped candidates are the
    # same under any plan, and the ranking never depends on the access path.
    cursor.execute(_TEXT_QUERIES, {"text": text, "ids": identifiers})
    q, q_all, ids, _, _ = cursor.fetchone()
    if not q:
        return None
    return {
        "q": q,
        "q_all": q_all or q,
        "ids": ids,
        # When every term is an identifier the identifier stage would read what the
        # any-term stage reads: it is skipped (identifier_match still ranks them first).
        "has_ids": bool(identifiers and ids) and _lexemes(ids) != _lexemes(q),
        "roles": role_ids,
        "n": n,
        "cap": max(n, cap if cap is not None else settings.RETRIEVAL_TEXT_MATCH_CAP),
    }


def cosine_distances(cursor, *, vector: str, chunk_ids: list[int]) -> dict[int, float]:
    """Distances of a few known chunks to the query: a k-row lookup, no scan."""
    if not chunk_ids:
        return {}
    cursor.execute(
        "SELECT id, embedding <=> %s::vector FROM knowledge_chunk WHERE id = ANY(%s)",
        [vector, chunk_ids],
    )
    return dict(cursor.fetchall())
