"""What the second lock costs: each retrieval leg through the application's plain role (row-level
security bound) against the same SQL through the superuser (not bound), on one corpus.

Synthetic corpus of N chunks in 200 documents (384-d clustered unit vectors, Zipf texts), each
document visible to role r0 (100%), r1 (~40%) and r2 (~5%). For each role and leg (full text,
exact vector, HNSW vector) it prints the median over Q queries of the leg alone: the vector leg
as retrieval runs it (the planner's plan choice and the exact fallback are not part of it).

    python bench/row_security.py [--chunks 50000] [--queries 30]

Runs against its own embedded PostgreSQL in a temporary directory. Leaves out: the query
embedding, Python-side fusion, the HTTP stack; warm caches (every query repeats on the same
corpus); one machine, no other load assumed (say so when there was).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCUMENTS = 200
SHARES = (("100%", 1.0), ("40%", 0.4), ("5%", 0.05))


def _on(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def _vector(rng, centres) -> str:
    v = centres[rng.integers(len(centres))] + rng.normal(scale=0.06, size=centres.shape[1])
    v /= np.linalg.norm(v)
    return "[" + ",".join(f"{x:.5f}" for x in v) + "]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=50000)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()

    from config import embedded
    from config.db_roles import app_role_url

    root = embedded.start_scratch_stack(prefix="chatbot-bench-rls-", redis=False)
    try:
        import psycopg

        admin = os.environ["DATABASE_URL"]
        app = app_role_url(admin, password="bench", createdb=True)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench OWNER chatbot_app")
        os.environ["DATABASE_URL"] = _on(app, "bench")
        os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")  # not used here
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        run(args, admin_url=_on(admin, "bench"))
    finally:
        embedded.stop_scratch_stack(root)


def run(args, *, admin_url: str) -> None:
    import psycopg
    from django.db import connection

    from accounts.models import Role
    from knowledge import row_security
    from knowledge.models import Document, DocumentRole
    from knowledge.retrieval import sql

    rng = np.random.default_rng(1)
    roles = [Role.objects.create(name=f"r{i}") for i in range(len(SHARES))]
    documents = []
    for d in range(DOCUMENTS):
        doc = Document.objects.create(title=f"d{d}", status="ready", chunk_count=0)
        ids = [r.pk for r, (_, share) in zip(roles, SHARES, strict=True) if rng.random() < share]
        ids = ids or [roles[0].pk]
        DocumentRole.objects.bulk_create(DocumentRole(document=doc, role_id=r) for r in ids)
        documents.append((doc.pk, row_security.roles_literal(row_security.stored_roles(ids))))
    vocab = [f"w{i}" for i in range(3000)]
    weights = 1 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    centres = rng.normal(size=(200, 384)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    started = time.perf_counter()
    columns = "document_id, position, text, heading, token_count, content_hash, embedding"
    with psycopg.connect(admin_url, autocommit=True) as admin:  # COPY: as the superuser
        with admin.cursor().copy(
            f"COPY knowledge_chunk ({columns}, allowed_roles) FROM STDIN"
        ) as copy:
            for i in range(args.chunks):
                doc, literal = documents[i % DOCUMENTS]
                text = " ".join(rng.choice(vocab, size=30, p=weights))
                vector = _vector(rng, centres)
                copy.write_row((doc, i // DOCUMENTS, text, "", 30, "x", vector, literal))
        admin.execute("VACUUM ANALYZE knowledge_chunk")
    print(f"{args.chunks} chunks loaded in {time.perf_counter() - started:.0f} s")

    queries = [
        (_vector(rng, centres), " ".join(rng.choice(vocab[:300], size=3)))
        for _ in range(args.queries)
    ]

    def leg(cursor, name, role_id, vector, text):
        if name == "text":
            sql.text_leg(cursor, text=text, role_ids=[role_id], n=20)
            return
        if name == "vector hnsw":
            sql.set_hnsw_options(cursor, ef_search=100)
        exact = name == "vector exact"
        sql.vector_leg(cursor, vector=vector, role_ids=[role_id], n=20, exact=exact)

    print(f"\n{'visible':8} {'leg':13} {'plain role p50':>15} {'superuser p50':>14} {'ratio':>6}")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for (label, _), role in zip(SHARES, roles, strict=True):
            for name in ("text", "vector exact", "vector hnsw"):
                bound, unbound = [], []
                for vector, text in queries:
                    t = time.perf_counter()
                    with row_security.scoped([role.pk]), connection.cursor() as cursor:
                        leg(cursor, name, role.pk, vector, text)
                    bound.append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    with admin.transaction():
                        leg(admin.cursor(), name, role.pk, vector, text)
                    unbound.append((time.perf_counter() - t) * 1000)
                a, b = statistics.median(bound), statistics.median(unbound)
                print(f"{label:8} {name:13} {a:12.1f} ms {b:11.1f} ms {a / b:6.2f}")


if __name__ == "__main__":
    main()
