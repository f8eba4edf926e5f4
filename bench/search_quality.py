"""Search quality on the demo gold sets: the bounded full-text leg against the unbounded one.

Seeds the Veluna Air demo workspace (seed_demo, then every document ingested in-process: no
Celery), and runs each gold case's retrieval query (chatbot.services.retrieval_query, the
question plus the previous one for a short follow-up) in the asker's scope through the real
hybrid search, chunk_search_with_plan with k = CHAT_RETRIEVAL_K, once per variant of the
full-text leg, all in the same run and the same way (sql.text_leg patched, nothing else):

- baseline: the previous, unbounded leg (BASELINE_TEXT_LEG below: every visible match ranked);
- product: sql.text_leg as shipped, with the default RETRIEVAL_TEXT_MATCH_CAP;
- product with cap 20: a cap that bites on this corpus, to show what cutting the stages does.

Per gold set and overall it prints the cases scored, hit@k and MRR (a hit is a passage of a
document named in the case's `cite`, mapped as evaluation/services.py does: the document's
file name, else its title), the cases whose first-hit rank differs from the baseline (with
the question and both ranks), how many cases' text-leg rows differ from the baseline's, and
the text leg's p50 latency (the leg alone, timed around the call). Cases with nothing to
cite (not_found) are skipped for hit@k and MRR but still searched, timed and compared.

    .venv/bin/python bench/search_quality.py [--sets demo,demo-extended]

Runs against its own embedded PostgreSQL and Redis in a temporary directory unless
DATABASE_URL is set (then the demo workspace is seeded into that database).

What the figures leave out: the corpus is small (the 16 demo documents), so no query comes near
the default cap and the product leg must return exactly the baseline's rows; the run ends
with "MISMATCH" and exit status 1 if any case's hit list, or the text leg's rows, differ.
The latencies are those of a tiny table. What the bound does at scale (a million chunks,
queries matching 40% of them) is measured by bench/retrieval.py. The answer model is not
called: this is retrieval only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL_CAP = 20

# The full-text leg before it was bounded: every visible match ranked.
BASELINE_TEXT_LEG = """
    WITH tq AS (
        SELECT (SELECT string_agg(quote_literal(lexeme), ' | ')
                FROM unnest(to_tsvector('english', %(text)s)))::tsquery AS q,
               replace(plainto_tsquery('english', %(ids)s)::text, ' & ', ' | ')::tsquery AS ids
    )
    SELECT {HIT_COLUMNS}, ts_rank_cd(c.search_vector, tq.q) AS rank,
           c.search_vector @@ tq.ids AS identifier_match
    FROM tq, knowledge_chunk c JOIN knowledge_document d ON d.id = c.document_id
    WHERE c.allowed_roles && %(roles)s::int[] AND c.search_vector @@ tq.q
    ORDER BY identifier_match DESC, rank DESC, c.id
    LIMIT %(n)s
"""


def start_database() -> Path | None:
    if os.environ.get("DATABASE_URL"):
        return None
    from config import embedded

    return embedded.start_scratch_stack(prefix="chatbot-bench-", redis=True)


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def baseline_text_leg(
    cursor, *, text: str, role_ids: list[int], n: int, cap=None, share=None
) -> list[tuple]:
    """The previous, unbounded leg (cap and share are the product leg's; unused here)."""
    from knowledge.retrieval import sql
    from knowledge.retrieval.hits import HIT_COLUMNS

    params = {
        "text": text,
        "ids": " ".join(sql.query_identifiers(text)),
        "roles": role_ids,
        "n": n,
    }
    cursor.execute(BASELINE_TEXT_LEG.format(HIT_COLUMNS=HIT_COLUMNS), params)
    return cursor.fetchall()


def seed_and_ingest() -> None:
    """seed_demo, then every document ingested here; exits unless all end ready."""
    import io

    from django.core.management import call_command

    from knowledge.models import Document
    from knowledge.tasks import ingest_document

    started = time.perf_counter()
    call_command("seed_demo", stdout=io.StringIO())
    for document_id in Document.objects.order_by("pk").values_list("pk", flat=True):
        ingest_document(document_id)
    statuses = dict(Document.objects.values_list("original_filename", "status"))
    not_ready = {name: s for name, s in statuses.items() if s != Document.Status.READY}
    if not statuses or not_ready:
        print(f"documents not ready after ingestion: {not_ready or 'no documents'}")
        sys.exit(1)
    print(
        f"{len(statuses)} demo documents seeded and ingested"
        f" in {time.perf_counter() - started:.0f} s"
    )


def search(*, scope, query: str, k: int, leg, cap: int | None, timings: list[float]):
    """(hits, text-leg chunk ids) with sql.text_leg replaced by ``leg``, timed."""
    from django.test import override_settings

    from knowledge.retrieval import chunk_search_with_plan, sql

    text_ids: list[int] = []

    def timed(cursor, **kwargs):
        started = time.perf_counter()
        rows = leg(cursor, **kwargs)
        timings.append((time.perf_counter() - started) * 1000)
        text_ids.extend(row[0] for row in rows)
        return rows

    overrides = {} if cap is None else {"RETRIEVAL_TEXT_MATCH_CAP": cap}
    with mock.patch.object(sql, "text_leg", timed), override_settings(**overrides):
        hits, _ = chunk_search_with_plan(scope=scope, query=query, k=k)
    return hits, text_ids


def hit_rank(hits, case) -> int | None:
    """As evaluation/services.py: the first rank whose document's name is in case.cite."""
    from knowledge.selectors import document_names_and_roles_unchecked

    files = document_names_and_roles_unchecked(document_ids={h.document_id for h in hits})
    names = [files.get(h.document_id, ("", frozenset()))[0] for h in hits]
    return next((rank for rank, name in enumerate(names, start=1) if name in case.cite), None)


def report(title: str, rows: list[dict], variants: list[str], k: int) -> None:
    scored = [r for r in rows if r["case"].cite]
    print(f"\n== {title}: {len(rows)} cases, {len(scored)} scored (with documents to cite)")
    print(
        f"{'variant':<24} {f'hit@{k}':>6} {'MRR':>6} {'rank != base':>12} "
        f"{'text rows != base':>17} {'text p50 ms':>11}"
    )
    base = variants[0]
    for name in variants:
        ranks = [r["rank"][name] for r in scored]
        hit = sum(rank is not None and rank <= k for rank in ranks) / len(scored)
        mrr = sum(1 / rank if rank else 0.0 for rank in ranks) / len(scored)
        moved = [r for r in scored if r["rank"][name] != r["rank"][base]]
        rows_differ = sum(r["text"][name] != r["text"][base] for r in rows)
        p50 = statistics.median(t for r in rows for t in r["ms"][name])
        print(f"{name:<24} {hit:>6.3f} {mrr:>6.3f} {len(moved):>12} {rows_differ:>17} {p50:>11.2f}")
        for r in moved:
            print(
                f"    {r['case'].id}: {r['case'].question!r}: rank "
                f"{r['rank'][base] or '-'} -> {r['rank'][name] or '-'}"
            )


def main():
    run_started = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="demo,demo-extended")
    args = parser.parse_args()
    root = start_database()
    try:
        setup_django()
        from django.conf import settings

        from chatbot.answering.prompts import Turn
        from chatbot.services import retrieval_query
        from evaluation.gold import load_gold_set
        from evaluation.services import case_scope
        from knowledge.retrieval import sql

        gold_sets = [load_gold_set(name) for name in args.sets.split(",")]
        seed_and_ingest()
        k = settings.CHAT_RETRIEVAL_K
        variants = {
            "baseline (unbounded)": (baseline_text_leg, None),
            f"product (cap {settings.RETRIEVAL_TEXT_MATCH_CAP})": (sql.text_leg, None),
            f"product (cap {SMALL_CAP})": (sql.text_leg, SMALL_CAP),
        }
        names = list(variants)
        print(f"k = {k}; variants run one after another per case, text leg timed alone")
        rows_by_set = {}
        for gold_set in gold_sets:
            rows = rows_by_set[gold_set.name] = []
            for case in gold_set.cases:
                scope = case_scope(case)
                history = [Turn(role, content) for role, content in case.history]
                query = retrieval_query(case.question, history)
                row = {"case": case, "hits": {}, "text": {}, "rank": {}, "ms": {}}
                for name, (leg, cap) in variants.items():
                    row["ms"][name] = []
                    hits, row["text"][name] = search(
                        scope=scope, query=query, k=k, leg=leg, cap=cap, timings=row["ms"][name]
                    )
                    row["hits"][name] = [h.chunk_id for h in hits]
                    row["rank"][name] = hit_rank(hits, case)
                rows.append(row)
            report(f"set {gold_set.name!r}", rows, names, k)
        everything = [row for rows in rows_by_set.values() for row in rows]
        if len(rows_by_set) > 1:
            report("overall", everything, names, k)
        product = names[1]
        mismatched = [
            r
            for r in everything
            if r["hits"][product] != r["hits"][names[0]]
            or r["text"][product] != r["text"][names[0]]
        ]
        for r in mismatched:
            print(
                f"MISMATCH {r['case'].id}: hits {r['hits'][names[0]]} vs {r['hits'][product]},"
                f" text-leg rows {r['text'][names[0]]} vs {r['text'][product]}"
            )
        if not mismatched:
            print(
                f"\n{product}: the same hits and text-leg rows as the baseline in all"
                f" {len(everything)} cases"
            )
    finally:
        if root is not None:
            from django.db import connections

            connections.close_all()
            from config import embedded

            embedded.stop_scratch_stack(root)
        print(f"\ntotal {time.perf_counter() - run_started:.0f} s")
    sys.exit(1 if mismatched else 0)


if __name__ == "__main__":
    main()
