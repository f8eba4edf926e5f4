"""Reads of documents and chunks for a user. chunk_search is the one retrieval choke point."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, replace

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404

from accounts.selectors import user_role_ids
from knowledge import embeddings
from knowledge.models import Document, DocumentRole

logger = logging.getLogger(__name__)

RRF_K = 60
ROLE_COUNTS_CACHE_SECONDS = 30
HNSW_MIN_EF_SEARCH = 128
HNSW_MIN_SELECTIVITY = 0.25
HNSW_MAX_EF_SEARCH = 1000


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    title: str
    text: str
    heading: str
    page: int | None
    position: int
    score: float
    # Cosine similarity of the chunk to the query (1 = same direction), whichever leg found it.
    similarity: float | None = None


@dataclass(frozen=True)
class SearchPlan:
    name: str  # "exact", "hnsw" or "hnsw+exact-fallback"
    visible_estimate: int
    ef_search: int | None = None


def document_list_for_user(*, user) -> QuerySet[Document]:
    role_ids = user_role_ids(user=user)
    visible = DocumentRole.objects.filter(document_id=OuterRef("pk"), role_id__in=role_ids)
    return Document.objects.filter(Exists(visible)).prefetch_related("roles")


def access_document(*, user, document_id: int) -> Document:
    """The document if one of its roles is the user's, else Http404 (never 403)."""
    try:
        return document_list_for_user(user=user).get(pk=document_id)
    except Document.DoesNotExist:
        raise Http404("No document with this id.") from None


def access_document_for_management_unchecked(*, document_id: int) -> Document:
    """Any document, for callers already holding document management permission."""
    try:
        return Document.objects.prefetch_related("roles").get(pk=document_id)
    except Document.DoesNotExist:
        raise Http404("No document with this id.") from None


def role_chunk_counts() -> tuple[dict[int, int], int]:
    """Chunks per role and in total, from documents' chunk counts; cached a few seconds.

    Only the search plan depends on these figures, never which rows a user may see.
    """
    cached = cache.get("knowledge:role_chunk_counts")
    if cached is not None:
        return cached
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT dr.role_id, COALESCE(SUM(d.chunk_count), 0)
            FROM knowledge_documentrole dr JOIN knowledge_document d ON d.id = dr.document_id
            GROUP BY dr.role_id
            """
        )
        per_role = {role_id: int(n) for role_id, n in cursor.fetchall()}
        cursor.execute("SELECT COALESCE(SUM(chunk_count), 0) FROM knowledge_document")
        total = int(cursor.fetchone()[0])
    cache.set("knowledge:role_chunk_counts", (per_role, total), ROLE_COUNTS_CACHE_SECONDS)
    return per_role, total


def choose_plan(*, role_ids: list[int], k: int) -> SearchPlan:
    per_role, total = role_chunk_counts()
    # The sum over-counts chunks shared by several of the user's roles: an upper bound.
    visible = min(total, sum(per_role.get(r, 0) for r in role_ids))
    selectivity = max(visible / max(total, 1), 1e-6)
    # Exact costs ~1 us per visible row (more once PostgreSQL prefers a full scan of a small
    # table); HNSW costs about ef_search / selectivity rows, cheap once a quarter of the table
    # is visible. bench/retrieval.py measures both plans for every case.
    if visible <= settings.RETRIEVAL_EXACT_THRESHOLD and (
        selectivity <= HNSW_MIN_SELECTIVITY or visible <= 1000
    ):
        return SearchPlan(name="exact", visible_estimate=visible)
    ef = int(min(HNSW_MAX_EF_SEARCH, max(HNSW_MIN_EF_SEARCH, math.ceil(2 * k / selectivity))))
    return SearchPlan(name="hnsw", visible_estimate=visible, ef_search=ef)


def pgvector_version() -> tuple[int, ...]:
    cached = cache.get("knowledge:pgvector_version")
    if cached is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        cached = tuple(int(p) for p in re.findall(r"\d+", row[0] if row else "0"))
        cache.set("knowledge:pgvector_version", cached, None)
    return cached


_HIT_COLUMNS = """
    c.id, c.document_id, d.title, c.text, c.heading, c.page, c.position, c.allowed_roles
"""

# The inner query ranks ids only; text and titles are fetched for the n winners. The exact
# plan orders by "distance + 0", which hides the ORDER BY from the HNSW index: an exact scan
# of the ACL-filtered rows.
_VECTOR_LEG = f"""
    SELECT {_HIT_COLUMNS}, v.distance
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

# Any query term may match (OR), except terms so common in the corpus that ranking their
# matches costs more than they tell (a stop list learned from PostgreSQL's own column
# statistics). Chunks containing an identifier from the query (a part or case number) rank
# first, as such terms are rare and meant exactly.
_TEXT_LEG = f"""
    WITH tq AS (
        SELECT (SELECT string_agg(quote_literal(lexeme), ' | ')
                FROM unnest(to_tsvector('english', %(text)s))
                WHERE lexeme <> ALL(%(common)s::text[]))::tsquery AS q,
               replace(plainto_tsquery('english', %(ids)s)::text, ' & ', ' | ')::tsquery AS ids
    )
    SELECT {_HIT_COLUMNS}, ts_rank_cd(c.search_vector, tq.q) AS rank,
           c.search_vector @@ tq.ids AS identifier_match
    FROM tq, knowledge_chunk c JOIN knowledge_document d ON d.id = c.document_id
    WHERE c.allowed_roles && %(roles)s::int[] AND c.search_vector @@ tq.q
    ORDER BY identifier_match DESC, rank DESC, c.id
    LIMIT %(n)s
"""

# A term in more than 1% of the chunks (and more than 500 of them) is treated as a stop
# word, the cut-off that inverse-document-frequency pruning commonly uses.
COMMON_TERM_SHARE = 0.01
COMMON_TERM_MIN_MATCHES = 500
COMMON_TERMS_CACHE_SECONDS = 300


def common_lexemes() -> list[str]:
    """Lexemes that PostgreSQL's column statistics say are too common to rank by."""
    cached = cache.get("knowledge:common_lexemes")
    if cached is not None:
        return cached
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples
            FROM pg_stats s JOIN pg_class c ON c.relname = s.tablename
            WHERE s.tablename = 'knowledge_chunk' AND s.attname = 'search_vector'
              AND s.schemaname = current_schema()
            """
        )
        row = cursor.fetchone()
    common = []
    if row and row[0]:
        lexemes, freqs, rows = row
        common = [
            lexeme
            for lexeme, share in zip(lexemes, freqs, strict=False)
            if share > COMMON_TERM_SHARE and share * rows > COMMON_TERM_MIN_MATCHES
        ]
    cache.set("knowledge:common_lexemes", common, COMMON_TERMS_CACHE_SECONDS)
    return common


# A token with a digit and a letter or separator ("HX-99731-Q", "2024-CV-0193", "Q3"),
# or a long number: the kind of term a user means exactly.
_IDENTIFIER = re.compile(r"(?=\S*\d)(?:\S*[A-Za-z/_-]\S*|\d{5,})")


def query_identifiers(query: str) -> list[str]:
    return [
        t.strip(".,;:!?()[]\"'")
        for t in query.split()
        if _IDENTIFIER.fullmatch(t.strip(".,;:!?()[]\"'"))
    ]


def _vector_leg(cursor, *, vector: str, role_ids: list[int], n: int, exact: bool) -> list[tuple]:
    order = "(embedding <=> %(q)s::vector) + 0, id" if exact else "embedding <=> %(q)s::vector"
    cursor.execute(_VECTOR_LEG.format(order=order), {"q": vector, "roles": role_ids, "n": n})
    rows = cursor.fetchall()
    return sorted(rows, key=lambda r: (r[-1], r[0]))


def _text_leg(cursor, *, text: str, role_ids: list[int], n: int) -> list[tuple]:
    params = {
        "text": text,
        "ids": " ".join(query_identifiers(text)),
        "common": common_lexemes(),
        "roles": role_ids,
        "n": n,
    }
    cursor.execute(_TEXT_LEG, params)
    return cursor.fetchall()


def chunk_search_with_plan(
    *, user, query: str, k: int = 5, vector_only: bool = False
) -> tuple[list[SearchHit], SearchPlan]:
    """Hybrid (vector + full text, RRF) search over the chunks the user's roles may see.

    Every row returned overlaps the user's roles; the ACL predicate sits inside the same SQL
    as the ranking. Returns min(k, visible chunks) rows.
    """
    role_ids = user_role_ids(user=user)
    query = query.strip()
    k = max(1, min(int(k), settings.RETRIEVAL_MAX_K))
    if not role_ids or not query:
        return [], SearchPlan(name="none", visible_estimate=0)
    vector = embeddings.to_pgvector(embeddings.embed_query(query))
    n = max(2 * k, 20)
    plan = choose_plan(role_ids=role_ids, k=n)
    with transaction.atomic(), connection.cursor() as cursor:
        if plan.name == "hnsw":
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(plan.ef_search)])
            if pgvector_version() >= (0, 8):
                cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        vector_rows = _vector_leg(
            cursor, vector=vector, role_ids=role_ids, n=n, exact=plan.name == "exact"
        )
        if plan.name == "hnsw" and len(vector_rows) < n:
            # The index scan filtered too much away; only an exact scan guarantees min(n, visible).
            vector_rows = _vector_leg(cursor, vector=vector, role_ids=role_ids, n=n, exact=True)
            plan = SearchPlan("hnsw+exact-fallback", plan.visible_estimate, plan.ef_search)
        text_rows = [] if vector_only else _text_leg(cursor, text=query, role_ids=role_ids, n=n)
        hits = _fuse(vector_rows, text_rows, k=k)
        distances = {row[0]: row[-1] for row in vector_rows}
        hits = _with_similarity(cursor, hits, distances=distances, vector=vector)
    allowed = set(role_ids)
    for row in (*vector_rows, *text_rows):
        if not allowed.intersection(row[7]):
            logger.critical("chunk %s returned outside the user's roles", row[0])
            raise AssertionError("retrieval returned a chunk outside the user's roles")
    return hits, plan


def chunk_search(*, user, query: str, k: int = 5) -> list[SearchHit]:
    return chunk_search_with_plan(user=user, query=query, k=k)[0]


def _with_similarity(cursor, hits, *, distances: dict[int, float], vector: str):
    missing = [h.chunk_id for h in hits if h.chunk_id not in distances]
    if missing:  # found by the text leg only: a k-row lookup, no scan
        cursor.execute(
            "SELECT id, embedding <=> %s::vector FROM knowledge_chunk WHERE id = ANY(%s)",
            [vector, missing],
        )
        distances = {**distances, **dict(cursor.fetchall())}
    return [replace(h, similarity=round(1 - distances[h.chunk_id], 4)) for h in hits]


def _fuse(vector_rows: list[tuple], text_rows: list[tuple], *, k: int) -> list[SearchHit]:
    """Reciprocal Rank Fusion of the vector, full-text and exact-identifier rankings."""
    scores: dict[int, float] = {}
    rows: dict[int, tuple] = {}
    identifier_rows = [row for row in text_rows if row[-1]]
    for ranked in (vector_rows, text_rows, identifier_rows):
        for rank, row in enumerate(ranked, start=1):
            scores[row[0]] = scores.get(row[0], 0.0) + 1.0 / (RRF_K + rank)
            rows.setdefault(row[0], row)
    best = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))[:k]
    return [
        SearchHit(
            chunk_id=rows[i][0],
            document_id=rows[i][1],
            title=rows[i][2],
            text=rows[i][3],
            heading=rows[i][4],
            page=rows[i][5],
            position=rows[i][6],
            score=round(scores[i], 6),
        )
        for i in best
    ]


def access_chunk(*, user, chunk_id: int) -> SearchHit:
    """One chunk if it overlaps the user's roles, else Http404 (never 403)."""
    role_ids = user_role_ids(user=user)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {_HIT_COLUMNS} FROM knowledge_chunk c
            JOIN knowledge_document d ON d.id = c.document_id
            WHERE c.id = %s AND c.allowed_roles && %s::int[]
            """,
            [chunk_id, role_ids],
        )
        row = cursor.fetchone()
    if row is None or not role_ids:
        raise Http404("No passage with this id.")
    return SearchHit(*row[:7], score=0.0)


def visible_chunk_ids(*, user, chunk_ids: list[int]) -> set[int]:
    """The subset of chunk_ids the user may see now (conversation history re-checks these)."""
    role_ids = user_role_ids(user=user)
    if not role_ids or not chunk_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM knowledge_chunk WHERE id = ANY(%s) AND allowed_roles && %s::int[]",
            [list(chunk_ids), role_ids],
        )
        return {row[0] for row in cursor.fetchall()}
