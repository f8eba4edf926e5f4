"""Retrieval benchmark: permission-filtered search at 10k and 100k chunks.

Synthetic corpus: clustered unit vectors (384-d, like sentence embeddings: most mass near
a few hundred topic centres) and texts drawn from a Zipf vocabulary, so both legs of the
hybrid search do real work. Users see 0.5%, 5%, 40% and 100% of the chunks.

For each case it prints rows returned vs min(k, visible), recall@10 of the vector leg
against exact filtered search, p50/p95 latency of the full hybrid chunk_search (query
embedding excluded: vectors are given), and the plan chosen; then the same for the naive
query (HNSW + WHERE, default ef_search) side by side, and the exact plan forced, which is
what RETRIEVAL_EXACT_THRESHOLD is calibrated from; then the full-text leg alone, as shipped
(bounded: RETRIEVAL_TEXT_MATCH_CAP) and as it was before (every visible match ranked), in
the same run, on the same queries.

    python bench/retrieval.py [--sizes 10000,100000] [--queries 100] [--data-dir PATH]

Runs against its own embedded PostgreSQL in a temporary directory unless DATABASE_URL is set.
With --data-dir the embedded cluster lives under PATH (keep it outside the repository) and
stays there: the table bench_corpus records what was loaded (size, seed, CORPUS_VERSION, the
role ids), and a later run with the same size and seed skips the load and the index build
and goes straight to the queries. The Python side of the corpus (vectors, membership,
texts, queries) is regenerated from the seed every run; its time is printed. The cluster
keeps one corpus at a time: another size or seed reloads it. Bump CORPUS_VERSION whenever
Corpus or load() changes what ends up in the tables.

For each size it prints the corpus generation, load, HNSW build (with the maintenance
settings used) and VACUUM ANALYZE times, and the on-disk sizes of the table and its indexes.
"""

from __future__ import annotations

import argparse
import json
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
SEED = 7
CORPUS_VERSION = 1  # bump when Corpus or load() changes what is stored
PER_DOC = 10  # chunks per document
# Bulk HNSW build on the 2-core, 24 GiB machine: enough memory for the 1M-chunk graph to stay
# in memory (about 2.5 GB for 384-d, m = 16; past maintenance_work_mem pgvector falls back to
# a much slower on-disk build), and one worker besides the leader, one per core.
BUILD_SETTINGS = {"maintenance_work_mem": "4GB", "max_parallel_maintenance_workers": "1"}
# to_pgvector's text form, formatted in one %-operation per row: the same string (checked at
# load time) in about half the time, which is minutes at 1M chunks.
VECTOR_FORMAT = "[" + ",".join(["%.7g"] * DIM) + "]"
INDEXES = ("chunk_embedding_hnsw", "chunk_allowed_roles_gin", "chunk_search_vector_gin")


def start_database(data_dir: Path | None = None) -> Path | None:
    if os.environ.get("DATABASE_URL"):
        if data_dir is not None:
            sys.exit("--data-dir starts its own embedded PostgreSQL: unset DATABASE_URL")
        return None
    from config import embedded

    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")  # not used here
    if data_dir is None:
        return embedded.start_scratch_stack(prefix="chatbot-bench-", redis=False)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = embedded.start_postgres(root=data_dir)
    # As start_scratch_stack: tells the settings this is not a production database.
    os.environ[getattr(embedded, "EMBEDDED_MARKER", "CHATBOT_EMBEDDED")] = "1"
    return data_dir


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def percentile(values, q):
    return float(np.percentile(np.array(values), q))


class Corpus:
    def __init__(self, n: int, seed: int = SEED):
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
        # Exactly what `rng.choice(vocab, size=30, p=self.p)` per text draws (same random
        # stream, same words), in one call: per-call choice() took minutes at 1M chunks.
        cdf = self.p.cumsum()
        cdf /= cdf[-1]
        words = cdf.searchsorted(rng.random((n, 30)), side="right").tolist()
        self.texts = [" ".join([vocab[w] for w in row]) for row in words]
        self.membership = {name: rng.random(n) < share for name, share in SHARES.items()}
        self.rng = rng

    def doc_roles(self, roles: dict) -> list[list[int]]:
        """One document per PER_DOC consecutive chunks; its roles come from its first chunk."""
        n = len(self.texts)
        return [
            [roles["all"]]
            + [roles[name] for name in ("tiny", "small", "large") if self.membership[name][d]]
            for d in range(0, n, PER_DOC)
        ]

    def follow_documents(self):
        """A chunk's roles are its document's: recompute the true shares per chunk."""
        first = np.arange(len(self.texts)) // PER_DOC * PER_DOC
        for name in ("tiny", "small", "large"):
            self.membership[name] = self.membership[name][first]

    def queries(self, count: int):
        picks = self.rng.integers(0, len(self.centres), size=count)
        out = []
        for c in picks:
            v = self.centres[c] + self.rng.normal(scale=0.06, size=DIM).astype(np.float32)
            text = " ".join(self.rng.choice(self.vocab[:600], size=3))
            out.append((text, v / np.linalg.norm(v)))
        return out


def load(corpus: Corpus, roles: dict) -> dict:
    """Replace the corpus in the database; return the phase timings and build settings."""
    from django.db import connection

    from knowledge.embeddings import to_pgvector

    n = len(corpus.texts)
    per_doc = PER_DOC
    doc_roles = corpus.doc_roles(roles)
    first = corpus.vectors[0]
    assert VECTOR_FORMAT % tuple(first.tolist()) == to_pgvector(first), "VECTOR_FORMAT drifted"
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE knowledge_chunk, knowledge_documentrole, knowledge_document CASCADE"
        )
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
        # One document per 10 consecutive chunks; a chunk's roles are its document's roles.
        with cursor.copy(
            "COPY knowledge_document (id, title, status, error, progress_done,"
            " progress_total, chunk_count, size_bytes, content_hash, indexed_hash,"
            " file, original_filename, content_type, created_at, updated_at,"
            " status_changed_at, ingest_attempts) FROM STDIN"
        ) as copy:
            for d in range(0, n, per_doc):
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
                        VECTOR_FORMAT % tuple(corpus.vectors[i].tolist()),
                        "{" + ",".join(map(str, ids)) + "}",
                    )
                )
        load_s = time.perf_counter() - started
        # The HNSW index is built after the bulk load (the GIN indexes were kept up during it).
        build_s, settings = build_index(cursor)
        started = time.perf_counter()
        cursor.execute("VACUUM ANALYZE knowledge_chunk")
        vacuum_s = time.perf_counter() - started
    return {"load_s": load_s, "build_s": build_s, "vacuum_s": vacuum_s, "settings": settings}


def build_index(cursor) -> tuple[float, str]:
    """The product's HNSW index (knowledge/retrieval/vector_index.py), built in one go with
    the bulk-build settings; returns the build time and a description of the settings."""
    from knowledge.retrieval import vector_index

    cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
    memory, workers = vector_index.build_settings(
        cursor,
        memory=BUILD_SETTINGS["maintenance_work_mem"],
        workers=int(BUILD_SETTINGS["max_parallel_maintenance_workers"]),
    )
    started = time.perf_counter()
    try:
        cursor.execute(
            "CREATE INDEX "
            + vector_index.index_definition(ef_construction=vector_index.HNSW_EF_CONSTRUCTION)
        )
    finally:
        vector_index.reset_build_settings(cursor)
    described = (
        f"maintenance_work_mem={memory}, max_parallel_maintenance_workers={workers},"
        f" m={vector_index.HNSW_M}, ef_construction={vector_index.HNSW_EF_CONSTRUCTION}"
    )
    return time.perf_counter() - started, described


# What is loaded in a --data-dir cluster. One row, written only once the load, the index
# build and VACUUM ANALYZE have all finished, so an interrupted load is never reused.
META_DDL = """
CREATE TABLE IF NOT EXISTS bench_corpus (
    chunks bigint NOT NULL,
    seed integer NOT NULL,
    corpus_version integer NOT NULL,
    role_ids jsonb NOT NULL,
    load_s double precision NOT NULL,
    build_s double precision NOT NULL,
    vacuum_s double precision NOT NULL,
    build_settings text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
)
"""


def prepared(n: int, seed: int, roles: dict) -> dict | None:
    """The recorded load when the cluster holds exactly this corpus, else None."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(META_DDL)
        cursor.execute(
            "SELECT chunks, seed, corpus_version, role_ids, load_s, build_s, vacuum_s,"
            " build_settings, loaded_at FROM bench_corpus"
        )
        row = cursor.fetchone()
        if row is None:
            return None
        chunks, got_seed, version, role_ids, load_s, build_s, vacuum_s, settings, at = row
        if isinstance(role_ids, str):  # Django's psycopg setup leaves jsonb undecoded
            role_ids = json.loads(role_ids)
        if (chunks, got_seed, version, role_ids) != (n, seed, CORPUS_VERSION, roles):
            print(
                f"data dir holds {chunks:,} chunks, seed {got_seed}, corpus version {version},"
                f" roles {role_ids}: reloading for {n:,} chunks, seed {seed},"
                f" version {CORPUS_VERSION}, roles {roles}"
            )
            return None
        # Guard against a table changed behind the record's back.
        cursor.execute("SELECT count(*) FROM knowledge_chunk")
        count = cursor.fetchone()[0]
        cursor.execute("SELECT to_regclass('chunk_embedding_hnsw') IS NOT NULL")
        has_hnsw = cursor.fetchone()[0]
        if count != n or not has_hnsw:
            print(f"data dir record does not match its table ({count:,} rows): reloading")
            return None
        from knowledge.retrieval import vector_index

        wanted = {
            "m": str(vector_index.HNSW_M),
            "ef_construction": str(vector_index.HNSW_EF_CONSTRUCTION),
        }
        if vector_index.vector_index_options() != wanted:
            print(f"the stored HNSW index is not the product's ({wanted}): rebuilding it")
            build_s, settings = build_index(cursor)
            cursor.execute(
                "UPDATE bench_corpus SET build_s = %s, build_settings = %s", [build_s, settings]
            )
    return {
        "load_s": load_s,
        "build_s": build_s,
        "vacuum_s": vacuum_s,
        "settings": settings,
        "loaded_at": at,
    }


def record(n: int, seed: int, roles: dict, timing: dict):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(META_DDL)
        cursor.execute("DELETE FROM bench_corpus")
        cursor.execute(
            "INSERT INTO bench_corpus (chunks, seed, corpus_version, role_ids, load_s,"
            " build_s, vacuum_s, build_settings) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                n,
                seed,
                CORPUS_VERSION,
                json.dumps(roles),
                timing["load_s"],
                timing["build_s"],
                timing["vacuum_s"],
                timing["settings"],
            ],
        )


def forget():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(META_DDL)
        cursor.execute("DELETE FROM bench_corpus")


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def relation_sizes(n: int) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_relation_size('knowledge_chunk'),"
            " pg_total_relation_size('knowledge_chunk'),"
            + ", ".join(f"pg_relation_size('{name}')" for name in INDEXES)
        )
        table, total, *indexes = cursor.fetchone()
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        version = cursor.fetchone()
    short = {
        "chunk_embedding_hnsw": "HNSW",
        "chunk_allowed_roles_gin": "GIN roles",
        "chunk_search_vector_gin": "GIN text",
    }
    parts = [f"table (heap) {mib(table)} ({table / n:,.0f} B/chunk)"]
    parts += [
        f"{short[name]} {mib(size)} ({size / n:,.0f} B/chunk)"
        for name, size in zip(INDEXES, indexes, strict=True)
    ]
    parts.append(f"total with all indexes and TOAST {mib(total)}")
    return "sizes: " + ", ".join(parts) + f"; pgvector {version[0] if version else '?'}"


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
    from search_quality import baseline_text_leg

    from knowledge.retrieval import sql

    rows = {"ours": [], "naive": [], "exact": []}
    recall = {"ours": [], "naive": []}
    lat = {"ours": [], "naive": [], "exact": [], "ours_vec": [], "text": [], "unbounded": []}
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
            # The full-text leg alone, as shipped and as it was (every visible match ranked).
            _, ms = timed(
                lambda text=text, share=plan.share: sql.text_leg(
                    cursor, text=text, role_ids=role_ids, n=20, share=share
                )
            )
            lat["text"].append(ms)
            _, ms = timed(
                lambda text=text: baseline_text_leg(cursor, text=text, role_ids=role_ids, n=20)
            )
            lat["unbounded"].append(ms)
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
        "text_p50": percentile(lat["text"], 50),
        "unbounded_p50": percentile(lat["unbounded"], 50),
        "plan": "/".join(sorted(plans)),
        "naive_rows_ok": f"{sum(r == expected for r in rows['naive'])}/{len(queries)}",
        "naive_rows_min": min(rows["naive"]),
        "naive_recall": statistics.mean(recall["naive"]),
        "naive_p50": percentile(lat["naive"], 50),
        "naive_p95": percentile(lat["naive"], 95),
        "exact_p50": percentile(lat["exact"], 50),
        "exact_p95": percentile(lat["exact"], 95),
    }


def ef_sweep(corpus, role_ids: dict, queries_per_case: int, efs: list[int]) -> None:
    """Recall@10 and latency of the iterative HNSW vector leg alone at each ef_search, per
    visibility: what the planner's ef_search floor is chosen from (planner.py)."""
    from django.db import connection

    from knowledge.embeddings import to_pgvector
    from knowledge.retrieval import sql

    print(f"\nef_search sweep: vector leg alone (iterative scan), {queries_per_case} queries")
    print(f"{'share':>6} | " + " | ".join(f"ef {ef:>4}: recall   p50   p95" for ef in efs))
    for name, share in SHARES.items():
        queries = [to_pgvector(v) for _, v in corpus.queries(queries_per_case)]
        scope = [role_ids[name]]
        cells = []
        with connection.cursor() as cursor:
            truths = [exact_ids(cursor, q, scope, K) for q in queries]
            for ef in efs:
                recall, lat = [], []
                with transaction_scope():
                    sql.set_hnsw_options(cursor, ef_search=ef, max_scan_tuples=200_000)
                    for q, truth in zip(queries, truths, strict=True):
                        rows, ms = timed(
                            lambda q=q, scope=scope: sql.vector_leg(
                                cursor, vector=q, role_ids=scope, n=20, exact=False
                            )
                        )
                        lat.append(ms)
                        got = [r[0] for r in rows[:K]]
                        recall.append(len(set(got) & set(truth)) / max(1, len(truth)))
                cells.append(
                    f"{statistics.mean(recall):>16.3f} {percentile(lat, 50):>5.1f}"
                    f" {percentile(lat, 95):>5.1f}"
                )
        print(f"{share * 100:>5.1f}% | " + " | ".join(cells))


def transaction_scope():
    from django.db import transaction

    return transaction.atomic()


def main():
    run_started = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the embedded PostgreSQL cluster and the loaded corpus under this path"
        " (outside the repository) and reuse them when size, seed and version match",
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--ef-sweep",
        default="",
        help="also print the vector leg's recall@10 and latency at these ef_search values,"
        " e.g. 40,80,128",
    )
    args = parser.parse_args()
    data_dir = args.data_dir.resolve() if args.data_dir else None
    root = start_database(data_dir)
    temporary = root is not None and data_dir is None
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
            started = time.perf_counter()
            corpus = Corpus(n, seed=args.seed)
            generate_s = time.perf_counter() - started
            reuse = prepared(n, args.seed, roles) if data_dir else None
            if reuse is None:
                if data_dir:
                    forget()
                timing = load(corpus, roles)
                if data_dir:
                    record(n, args.seed, roles, timing)
            corpus.follow_documents()
            print(
                f"\n== {n:,} chunks (load {timing['load_s']:.0f} s, "
                f"HNSW build {timing['build_s']:.0f} s), {args.queries} queries per case"
                if reuse is None
                else f"\n== {n:,} chunks (prepared corpus reused from {data_dir}), "
                f"{args.queries} queries per case"
            )
            if reuse is None:
                print(
                    f"corpus generated in {generate_s:.1f} s; load {timing['load_s']:.0f} s,"
                    f" HNSW build {timing['build_s']:.0f} s ({timing['settings']}),"
                    f" VACUUM ANALYZE {timing['vacuum_s']:.0f} s"
                )
            else:
                print(
                    f"corpus generated in {generate_s:.1f} s; load and index build skipped"
                    f" (loaded {reuse['loaded_at']:%Y-%m-%d %H:%M}: load {reuse['load_s']:.0f} s,"
                    f" HNSW build {reuse['build_s']:.0f} s ({reuse['settings']}),"
                    f" VACUUM ANALYZE {reuse['vacuum_s']:.0f} s)"
                )
            print(relation_sizes(n))
            header = (
                f"{'share':>6} {'visible':>8} | {'plan':<20} {'rows==min(k,vis)':>16} "
                f"{'recall@10':>9} {'p50 ms':>7} {'p95 ms':>7} {'vec p50':>7} | "
                f"{'naive rows ok':>13} {'min':>4} {'recall':>6} {'p50':>6} {'p95':>6} | "
                f"{'exact p50':>9} {'p95':>6} | {'text p50':>8} {'unbounded':>9}"
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
                    f"{r['exact_p95']:>6.2f} | {r['text_p50']:>8.2f} {r['unbounded_p50']:>9.2f}"
                )
            if args.ef_sweep:
                efs = [int(ef) for ef in args.ef_sweep.split(",")]
                ef_sweep(corpus, roles, args.queries, efs)
    finally:
        if root is not None:
            from django.db import connections

            connections.close_all()
            from config import embedded

            if temporary:
                embedded.stop_scratch_stack(root)
            else:
                embedded.stop_postgres(root=root)  # the data stays for the next run
        print(f"\ntotal {time.perf_counter() - run_started:.0f} s")


if __name__ == "__main__":
    main()
