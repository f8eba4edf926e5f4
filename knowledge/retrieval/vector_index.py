"""Building the HNSW index on chunk embeddings: the settings a build gets, and a rebuild of
a live table that never leaves searches without an index.

pgvector builds the graph in maintenance_work_mem and falls back to a much slower on-disk
build past it (about 2.5 GB for a million 384-d chunks at m = 16), with the parallel
workers max_parallel_maintenance_workers allows. A rebuild (new parameters, or an index
bloated by many re-indexed documents) runs CREATE INDEX CONCURRENTLY beside the live index
and swaps the two, so searches and ingestion go on meanwhile. After a bulk load of many
documents it is faster to rebuild once than to let every insert extend the graph.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

INDEX = "chunk_embedding_hnsw"
NEW_INDEX = f"{INDEX}_rebuild"
HNSW_M = 16
# 64 is pgvector's default; 128 lifts recall@10 at a million chunks (docs/benchmarks.md)
# for a build about twice as long.
HNSW_EF_CONSTRUCTION = 128


@dataclass(frozen=True)
class IndexBuild:
    seconds: float
    size_bytes: int
    m: int
    ef_construction: int
    maintenance_work_mem: str
    workers: int

    def describe(self) -> str:
        return (
            f"{INDEX} rebuilt in {self.seconds:.1f} s, {self.size_bytes / 2**20:,.1f} MiB"
            f" (m={self.m}, ef_construction={self.ef_construction},"
            f" maintenance_work_mem={self.maintenance_work_mem},"
            f" parallel workers={self.workers})"
        )


def index_definition(*, name: str = INDEX, m: int = HNSW_M, ef_construction: int) -> str:
    return (
        f"{name} ON knowledge_chunk USING hnsw (embedding vector_cosine_ops)"
        f" WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
    )


def build_settings(cursor, *, memory: str | None = None, workers: int | None = None):
    """Session settings for a bulk build; returns what was set."""
    memory = memory or settings.INDEX_BUILD_MEMORY
    workers = settings.INDEX_BUILD_WORKERS if workers is None else workers
    cursor.execute("SELECT set_config('maintenance_work_mem', %s, false)", [memory])
    cursor.execute(
        "SELECT set_config('max_parallel_maintenance_workers', %s, false)", [str(int(workers))]
    )
    return memory, int(workers)


def reset_build_settings(cursor) -> None:
    cursor.execute("RESET maintenance_work_mem")
    cursor.execute("RESET max_parallel_maintenance_workers")


def rebuild_vector_index(
    *,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    m: int = HNSW_M,
    memory: str | None = None,
    workers: int | None = None,
) -> IndexBuild:
    """Build a new HNSW index concurrently, then swap it in for the live one.

    Must run outside a transaction (CREATE/DROP INDEX CONCURRENTLY). A build interrupted
    earlier leaves an invalid index under NEW_INDEX; it is dropped first."""
    if connection.in_atomic_block:
        raise RuntimeError("rebuild_vector_index runs CONCURRENTLY: call it outside a transaction")
    drop_interrupted_build()
    with connection.cursor() as cursor:
        memory, workers = build_settings(cursor, memory=memory, workers=workers)
        started = time.perf_counter()
        try:
            cursor.execute(
                "CREATE INDEX CONCURRENTLY "
                + index_definition(name=NEW_INDEX, m=m, ef_construction=ef_construction)
            )
        finally:
            reset_build_settings(cursor)
        seconds = time.perf_counter() - started
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        cursor.execute(f"ALTER INDEX {NEW_INDEX} RENAME TO {INDEX}")
        cursor.execute("SELECT pg_relation_size(%s::regclass)", [INDEX])
        size = cursor.fetchone()[0]
    return IndexBuild(seconds, size, m, ef_construction, memory, workers)


def drop_interrupted_build() -> None:
    """Drop the invalid index a cancelled CONCURRENTLY build leaves behind (never used by
    searches, but still updated by every chunk write)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NEW_INDEX}")


def vector_index_options() -> dict[str, str]:
    """The live index's build parameters, as PostgreSQL stores them (reloptions)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reloptions FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
            " WHERE c.relname = %s AND i.indisvalid",
            [INDEX],
        )
        row = cursor.fetchone()
    return dict(option.split("=", 1) for option in (row[0] or [])) if row else {}
