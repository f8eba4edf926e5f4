"""Permission-scoped retrieval: search.py runs it, planner.py chooses how, sql.py holds the
queries, statistics.py the cached figures the planner reads."""

from knowledge.retrieval.hits import SearchHit
from knowledge.retrieval.planner import SearchPlan
from knowledge.retrieval.search import chunk_search, chunk_search_with_plan

__all__ = ["SearchHit", "SearchPlan", "chunk_search", "chunk_search_with_plan"]
