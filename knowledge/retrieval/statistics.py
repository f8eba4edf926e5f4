"""Figures the search planner reads: chunks per role, common lexemes, the pgvector version.

Cached for a few seconds to minutes. They decide how a search runs, never which rows a user
may see. Index writes call ``forget_role_counts`` so a new document changes the plan soon.
"""

from __future__ import annotations

import re

from django.core.cache import cache
from django.db import connection

ROLE_COUNTS_KEY = "knowledge:role_chunk_counts"
ROLE_COUNTS_CACHE_SECONDS = 30

# A term in more than 1% of the chunks (and more than 500 of them) is treated as a stop
# word, the cut-off that inverse-document-frequency pruning commonly uses.
COMMON_TERM_SHARE = 0.01
COMMON_TERM_MIN_MATCHES = 500
COMMON_TERMS_CACHE_SECONDS = 300


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
