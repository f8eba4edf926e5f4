"""Figures the search planner reads: chunks per role and the pgvector version.

Cached for a few seconds to minutes. They decide how a search runs (exact or HNSW), never
which rows a user may see nor how they rank: nothing here may shape a query's terms or
scores, since these figures count documents outside the user's scope. Index writes call
``forget_role_counts`` so a new document changes the plan soon.
"""

from __future__ import annotations

import re

from django.core.cache import cache
from django.db import connection

ROLE_COUNTS_KEY = "knowledge:role_chunk_counts"
ROLE_COUNTS_CACHE_SECONDS = 30


def forget_role_counts() -> None:
    cache.delete(ROLE_COUNTS_KEY)


def role_chunk_counts() -> tuple[dict[int, int], int]:
    """Chunks per role and in total, from documents' chunk counts; cached a few seconds."""
    cached = cache.get(ROLE_COUNTS_KEY)
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
    cache.set(ROLE_COUNTS_KEY, (per_role, total), ROLE_COUNTS_CACHE_SECONDS)
    return per_role, total


def pgvector_version() -> tuple[int, ...]:
    cached = cache.get("knowledge:pgvector_version")
    if cached is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        cached = tuple(int(p) for p in re.findall(r"\d+", row[0] if row else "0"))
        cache.set("knowledge:pgvector_version", cached, None)
    return cached
