"""How a search runs: exact or HNSW, and with which ef_search, from the rows a scope sees.

pgvector filters after an HNSW scan, so a selective ACL silently returns fewer than k rows;
the plan is therefore chosen here, from per-role chunk counts, not left to PostgreSQL.
With pgvector >= 0.8 the index scan is iterative: it goes on past ef_search until it has
the rows asked for or has visited max_scan_tuples, and only then can it come back short
(search.py then replaces it with an exact scan).

ef_search: with an iterative scan, the graph search's own quality is what matters, so it is
HNSW_MIN_EF_SEARCH up to HNSW_EF_REFERENCE_CHUNKS and grows as the square root of the table
past it; the scan itself goes on until enough visible rows are found. At a million chunks
(index built with ef_construction = 128) ef_search 128 gave recall@10 0.997-1.0 at every
visibility, where 40 gave 0.76 (bench/retrieval.py, docs/benchmarks.md). Without iterative
scans (pgvector < 0.8 on an external server) ef_search must also hold about 2n / selectivity
candidates, so that the visible ones among them hold the n nearest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from django.conf import settings

from knowledge.retrieval.statistics import role_chunk_counts

HNSW_MIN_EF_SEARCH = 128  # for tables up to HNSW_EF_REFERENCE_CHUNKS
HNSW_EF_REFERENCE_CHUNKS = 1_000_000
HNSW_MIN_SELECTIVITY = 0.25
HNSW_MAX_EF_SEARCH = 1000
# Tuples an iterative scan may visit before it gives up (pgvector's default is 20,000):
# several times the candidates the scan needs at this visibility, within a bound that keeps
# a scan that cannot fill up cheaper than the exact scan that then replaces it.
HNSW_SCAN_TUPLES_PER_CANDIDATE = 4
HNSW_MIN_SCAN_TUPLES = 20_000
HNSW_MAX_SCAN_TUPLES = 200_000


@dataclass(frozen=True)
class SearchPlan:
    name: str  # "none", "exact", "hnsw" or "hnsw+exact-fallback"
    visible_estimate: int
    ef_search: int | None = None
    max_scan_tuples: int | None = None  # set when the index scan is iterative
    share: float = 1.0  # of the table's chunks the scope sees (an upper bound)


NO_PLAN = SearchPlan(name="none", visible_estimate=0)


def choose_plan(
    *, role_ids: tuple[int, ...] | list[int], k: int, iterative: bool = True
) -> SearchPlan:
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
        return SearchPlan(name="exact", visible_estimate=visible, share=selectivity)
    floor = HNSW_MIN_EF_SEARCH * math.sqrt(max(1.0, total / HNSW_EF_REFERENCE_CHUNKS))
    wanted_ef = floor if iterative else max(floor, 2 * k / selectivity)
    ef = int(min(HNSW_MAX_EF_SEARCH, math.ceil(wanted_ef)))
    scan = None
    if iterative:
        wanted = HNSW_SCAN_TUPLES_PER_CANDIDATE * ef / selectivity
        scan = int(min(HNSW_MAX_SCAN_TUPLES, max(HNSW_MIN_SCAN_TUPLES, math.ceil(wanted))))
    return SearchPlan(
        name="hnsw",
        visible_estimate=visible,
        ef_search=ef,
        max_scan_tuples=scan,
        share=selectivity,
    )


def exact_fallback(plan: SearchPlan) -> SearchPlan:
    """The plan that ran when the index scan came back short and an exact scan replaced it."""
    return replace(plan, name="hnsw+exact-fallback")
