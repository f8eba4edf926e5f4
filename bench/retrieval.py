"""Retrieval benchmark: permission-filtered search at 10k and 100k chunks.

Synthetic corpus: clustered unit vectors (384-d, like sentence embeddings: most mass near
a few hundred topic centres) and texts drawn from a Zipf vocabulary, so both legs of the
hybrid search do real work. Users see 0.5%, 5%, 40% and 100% of the chunks.

For each case it prints rows returned vs min(k, visible), recall@10 of the vector leg
against exact filtered search, p50/p95 latency of the full hybrid chunk_search (query
embedding excluded: vectors are given), and the plan chosen; then the same for the naive
query (HNSW + WHERE, default ef_search) side by side, and the exact plan forced, which is
what RETRIEVAL_EXACT_THRESHOLD is calibrated from.

    python bench/retrieval.py [--sizes 10000,100000] [--queries 100]

Runs against its own embedded PostgreSQL in a temporary directory unless DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARES = {"tiny": 0.005, "small": 0.05, "large": 0.40, "all": 1.0}
K = 10
DIM = 384


def start_database() -> Path | None:
    if os.environ.get("DATABASE_URL"):
        return None
    from config import embedded

    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")  # not used here
    return embedded.start_scratch_stack(prefix="chatbot-bench-", redis=False)


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def percentile(values, q):
    return float(np.percentile(np.array(values), q))


class Corpus:
    def __init__(self, n: int, seed: int = 7):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(max(50, n // 400), DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        self.assign = rng.integers(0, len(centres), size=n)
        vectors = centres[self.assign] + rng.normal(scale=0.06, size=(n, DIM)).astype(np.float32)
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.centres = centres
        vocab = [f"w{i}" for i in range(3000)]
        weights = 1 / np.arange(1, len(vocab) + 1)
        self.vocab, self.p = vocab, weights / weights.sum()
        self.texts = [" ".join(rng.choice(vocab, size=30, p=self.p)) for _ in range(n)]
        self.membership = {name: rng.random(n) < share for name, share in SHARES.items()}
        self.rng = rng

    def queries(self, count: int):
        picks = self.rng.integers(0, len(self.centres), size=count)
        out = []
        for c in picks:
            v = self.centres[c] + self.rng.normal(scale=0.06, size=DIM).astype(np.float32)
            text = " ".join(self.rng.choice(self.vocab[:600], size=3))
            out.append((text, v / np.linalg.norm(v)))
        return out


def load(corpus: Corpus, roles: dict):
    from django.db import connection

    from knowledge.embeddings import to_pgvector

    n = len(corpus.texts)
    per_doc = 10
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE knowledge_chunk, knowledge_documentrole, knowledge_document CASCADE"
        )
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
        # One document per 10 consecutive chunks; a chunk's roles are its document's roles.
        doc_roles = []
        with cursor.copy(
            "COPY knowledge_document (id, title, status, error, progress_done,"
            " progress_total, chunk_count, size_bytes, content_hash, indexed_hash,"
            " file, original_filename, content_type, created_at, updated_at,"
            " status_changed_at, ingest_attempts) FROM STDIN"
        ) as copy:
            for d in range(0, n, per_doc):
                ids = [roles["all"]] + [
                    roles[name] for name in ("tiny", "small", "large") if corpus.membership[name][d]
                ]
                doc_roles.append(ids)
                copy.write_row(
                    (
                        d // per_doc + 1,
                        f"Doc {d // per_doc}",
                        "ready",
                        "",
                        per_doc,
                        per_doc,
                        min(per_doc, n - d),
                        0,
                        "",
                        "",
                        "",
                        "",
                        "",
                        "now",
                        "now",
                        "now",
                        0,
                    )
                )
        with cursor.copy("COPY knowledge_documentrole (document_id, role_id) FROM STDIN") as copy:
            for i, ids in enumerate(doc_roles):
                for r in ids:
                    copy.write_row((i + 1, r))
        with cursor.copy(
            "COPY knowledge_chunk (document_id, position, text, heading, page,"
            " token_count, content_hash, embedding, allowed_roles) FROM STDIN"
        ) as copy:
            for i in range(n):
                ids = doc_roles[i // per_doc]
                copy.write_row(
                    (
                        i // per_doc + 1,
                        i % per_doc,
                        corpus.texts[i],
                        "",
                        None,
                        30,
                        "",
                        to_pgvector(corpus.vectors[i]),
                        "{" + ",".join(map(str, ids)) + "}",
                    )
                )
        # Chunk membership follows the document: recompute the true shares.
        for name in ("tiny", "small", "large"):
            corpus.membership[name] = np.array(
                [roles[name] in doc_roles[i // per_doc] for i in range(n)]
            )
        started = time.perf_counter()
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")
        cursor.execute(
            "CREATE INDEX chunk_embedding_hnsw ON knowledge_chunk USING hnsw"
            " (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        build = time.perf_counter() - started
        cursor.execute("VACUUM ANALYZE knowledge_chunk")
    return build


def exact_ids(cursor, vector: str, role_ids: list[int], k: int) -> list[int]:
    cursor.execute(
        "SELECT id FROM knowledge_chunk WHERE allowed_roles && %s::int[]"
        " ORDER BY (embedding <=> %s::vector) + 0, id LIMIT %s",
        [role_ids, vector, k],
    )
    return [r[0] for r in cursor.fetchall()]


def naive_ids(cursor, vector: str, role_ids: list[int], k: int) -> list[int]:
    cursor.execute(
        "SELECT id FROM knowledge_chunk WHERE allowed_roles && %s::int[]"
        " ORDER BY embedding <=> %s::vector LIMIT %s",
        [role_ids, vector, k],
    )
    return [r[0] for r in cursor.fetchall()]


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - started) * 1000


def run_case(corpus, user, role_ids, queries, visible):
    from django.db import connection
    from django.test import override_settings

    from accounts.selectors import user_scope
    from knowledge import embeddings
    from knowledge.retrieval import chunk_search_with_plan, planner

    lookup = {text: vec for text, vec in queries}
    embeddings.embed_query = lambda text: lookup[text]  # vectors are given: time the SQL
    rows = {"ours": [], "naive": [], "exact": []}
    recall = {"ours": [], "naive": []}
    lat = {"ours": [], "naive": [], "exact": [], "ours_vec": []}
    plans = set()
    with connection.cursor() as cursor:
        for text, vec in queries:
            literal = embeddings.to_pgvector(vec)
            truth = exact_ids(cursor, literal, role_ids, K)
            (hits, plan), ms = timed(
                lambda text=text: chunk_search_with_plan(
                    scope=user_scope(user=user), query=text, k=K
                )
            )
            lat["ours"].append(ms)
            rows["ours"].append(len(hits))
            plans.add(plan.name)
            (vhits, _), ms = timed(
                lambda text=text: chunk_search_with_plan(
                    scope=user_scope(user=user), query=text, k=K, vector_only=True
                )
            )
            lat["ours_vec"].append(ms)
            got = [h.chunk_id for h in vhits]
            recall["ours"].append(len(set(got) & set(truth)) / max(1, len(truth)))
            naive, ms = timed(lambda literal=literal: naive_ids(cursor, literal, role_ids, K))
            lat["naive"].append(ms)
            rows["naive"].append(len(naive))
            recall["naive"].append(len(set(naive) & set(truth)) / max(1, len(truth)))
            with (
                override_settings(RETRIEVAL_EXACT_THRESHOLD=10**12),
                mock.patch.object(planner, "HNSW_MIN_SELECTIVITY", 2.0),
            ):
                (ehits, _), ms = timed(
                    lambda text=text: chunk_search_with_plan(
                        scope=user_scope(user=user), query=text, k=K
                    )
                )
            lat["exact"].append(ms)
            rows["exact"].append(len(ehits))
    expected = min(K, visible)
    return {
        "expected": expected,
        "rows_ok": f"{sum(r == expected for r in rows['ours'])}/{len(queries)}",
        "rows_min": min(rows["ours"]),
        "recall": statistics.mean(recall["ours"]),
        "p50": percentile(lat["ours"], 50),
        "p95": percentile(lat["ours"], 95),
        "vec_p50": percentile(lat["ours_vec"], 50),
        "plan": "/".join(sorted(plans)),
        "naive_rows_ok": f"{sum(r == expected for r in rows['naive'])}/{len(queries)}",
        "naive_rows_min": min(rows["naive"]),
        "naive_recall": statistics.mean(recall["naive"]),
        "naive_p50": percentile(lat["naive"], 50),
        "naive_p95": percentile(lat["naive"], 95),
        "exact_p50": percentile(lat["exact"], 50),
        "exact_p95": percentile(lat["exact"], 95),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    root = start_database()
    try:
        setup_django()
        from django.conf import settings

        from accounts.models import Role, User

        roles = {name: Role.objects.get_or_create(name=f"bench-{name}")[0].pk for name in SHARES}
        users = {}
        for name in SHARES:
            user, _ = User.objects.get_or_create(username=f"bench-{name}")
            user.roles.set([roles[name]])
            users[name] = user
        print(
            f"threshold (RETRIEVAL_EXACT_THRESHOLD) = {settings.RETRIEVAL_EXACT_THRESHOLD}, k = {K}"
        )
        for n in [int(s) for s in args.sizes.split(",")]:
            corpus = Corpus(n)
            started = time.perf_counter()
            build = load(corpus, roles)
            print(
                f"\n== {n:,} chunks (load {time.perf_counter() - started:.0f} s, "
                f"HNSW build {build:.0f} s), {args.queries} queries per case"
            )
            header = (
                f"{'share':>6} {'visible':>8} | {'plan':<20} {'rows==min(k,vis)':>16} "
                f"{'recall@10':>9} {'p50 ms':>7} {'p95 ms':>7} {'vec p50':>7} | "
                f"{'naive rows ok':>13} {'min':>4} {'recall':>6} {'p50':>6} {'p95':>6} | "
                f"{'exact p50':>9} {'p95':>6}"
            )
            print(header)
            print("-" * len(header))
            from django.core.cache import cache

            for name, share in SHARES.items():
                cache.clear()
                visible = int(corpus.membership[name].sum()) if name != "all" else n
                queries = corpus.queries(args.queries)
                r = run_case(corpus, users[name], [roles[name]], queries, visible)
                print(
                    f"{share * 100:>5.1f}% {visible:>8} | {r['plan']:<20} {r['rows_ok']:>16} "
                    f"{r['recall']:>9.3f} {r['p50']:>7.2f} {r['p95']:>7.2f} {r['vec_p50']:>7.2f} | "
                    f"{r['naive_rows_ok']:>13} {r['naive_rows_min']:>4} {r['naive_recall']:>6.3f} "
                    f"{r['naive_p50']:>6.2f} {r['naive_p95']:>6.2f} | {r['exact_p50']:>9.2f} "
                    f"{r['exact_p95']:>6.2f}"
                )
    finally:
        if root is not None:
            from django.db import connections

            connections.close_all()
            from config import embedded

            embedded.stop_scratch_stack(root)


if __name__ == "__main__":
    main()
