"""How a search runs: exact or HNSW, and with which ef_search, from the rows a scope sees.

pgvector filters after an HNSW scan, so a selective ACL silently returns fewer than k rows;
the plan is therefore chosen here, from per-role chunk counts, not left to PostgreSQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings

from knowledge.retrieval.statistics import role_chunk_counts

HNSW_MIN_EF_SEARCH = 128
HNSW_MIN_SELECTIVITY = 0.25
HNSW_MAX_EF_SEARCH = 1000


@dataclass(frozen=True)
class SearchPlan:
    name: str  # "none", "exact", "hnsw" or "hnsw+exact-fallback"
    visible_estimate: int
    ef_search: int | None = None


NO_PLAN = SearchPlan(name="none", visible_estimate=0)


def choose_plan(*, role_ids: tuple[int, ...] | list[int], k: int) -> SearchPlan:
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


def exact_fallback(plan: SearchPlan) -> SearchPlan:
    """The plan that ran when the index scan came back short and an exact scan replaced it."""
    return SearchPlan("hnsw+exact-fallback", plan.visible_estimate, plan.ef_search)
