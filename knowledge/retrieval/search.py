"""chunk_search: the one way passages are retrieved for a user (the access choke point)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from django.conf import settings
from django.db import connection

from accounts.selectors import Scope
from config.metrics import observe_retrieval
from knowledge import embeddings, row_security
from knowledge.retrieval import sql
from knowledge.retrieval.hits import ALLOWED_ROLES_COLUMN, SearchHit, hit_from_row
from knowledge.retrieval.planner import NO_PLAN, SearchPlan, choose_plan, exact_fallback
from knowledge.retrieval.statistics import pgvector_version

logger = logging.getLogger(__name__)

RRF_K = 60


def chunk_search_with_plan(
    *, scope: Scope, query: str, k: int = 5, vector_only: bool = False
) -> tuple[list[SearchHit], SearchPlan]:
    """Hybrid (vector + full text, RRF) search over the chunks the scope's roles may see.

    Every row returned overlaps the scope's roles; the ACL predicate sits inside the same SQL
    as the ranking. Returns min(k, visible chunks) rows, and the plan that produced them.
    """
    role_ids = list(scope.role_ids)
    query = query.strip()
    k = max(1, min(int(k), settings.RETRIEVAL_MAX_K))
    if not role_ids or not query:
        return [], NO_PLAN
    vector = embeddings.to_pgvector(embeddings.embed_query(query))
    started = time.perf_counter()
    n = max(2 * k, 20)
    plan = choose_plan(role_ids=role_ids, k=n, iterative=pgvector_version() >= (0, 8))
    with row_security.scoped(role_ids), connection.cursor() as cursor:
        if plan.name == "hnsw":
            sql.set_hnsw_options(
                cursor, ef_search=plan.ef_search, max_scan_tuples=plan.max_scan_tuples
            )
        vector_rows = sql.vector_leg(
            cursor, vector=vector, role_ids=role_ids, n=n, exact=plan.name == "exact"
        )
        if plan.name == "hnsw" and len(vector_rows) < n:
            # The index scan filtered too much away; only an exact scan guarantees min(n, visible).
            vector_rows = sql.vector_leg(cursor, vector=vector, role_ids=role_ids, n=n, exact=True)
            plan = exact_fallback(plan)
        text_rows = (
            []
            if vector_only
            else sql.text_leg(cursor, text=query, role_ids=role_ids, n=n, share=plan.share)
        )
        hits = _fuse(vector_rows, text_rows, k=k)
        distances = {row[0]: row[-1] for row in vector_rows}
        missing = [h.chunk_id for h in hits if h.chunk_id not in distances]
        distances |= sql.cosine_distances(cursor, vector=vector, chunk_ids=missing)
    observe_retrieval(plan.name, time.perf_counter() - started)
    _assert_in_scope((*vector_rows, *text_rows), role_ids=role_ids)
    hits = [replace(h, similarity=round(1 - distances[h.chunk_id], 4)) for h in hits]
    return hits, plan


def chunk_search(*, scope: Scope, query: str, k: int = 5) -> list[SearchHit]:
    return chunk_search_with_plan(scope=scope, query=query, k=k)[0]


def _assert_in_scope(rows, *, role_ids: list[int]) -> None:
    allowed = set(role_ids)
    for row in rows:
        if not allowed.intersection(row[ALLOWED_ROLES_COLUMN]):
            logger.critical("chunk %s returned outside the user's roles", row[0])
            raise AssertionError("retrieval returned a chunk outside the user's roles")


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
    return [hit_from_row(rows[i], score=round(scores[i], 6)) for i in best]
