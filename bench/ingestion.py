"""Ingestion benchmark: a generated corpus through the real pipeline vs the raw embedder.

Uploads a few hundred documents of mixed types (Markdown, text, HTML, DOCX, PDF; several MB
of text) through the upload service, lets one real Celery worker (concurrency 1, like
`make run`) parse, chunk, embed and index them, and prints documents/s and chunks/s. In the
same run it embeds the very same chunk texts in-process with the same model and batch size:
the ratio is the pipeline's efficiency (target >= 80%).

    python bench/ingestion.py [--documents 300] [--paragraphs 12]

Runs on its own embedded PostgreSQL and Redis in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = (
    "aircraft audit balance budget cabin carrier cash check clause compliance contract cost "
    "crew customer delay engine estimate fleet flight forecast freight fuel gear hangar "
    "inspection invoice lease ledger maintenance manual margin notice payroll pilot policy "
    "procedure propeller quarter ramp ratio record refund region report revenue route safety "
    "schedule seat service settlement station supplier tax torque training travel turnaround "
    "warranty weight winter"
).split()


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 18))
    figure = f"{rng.randint(1, 9999):,}"
    return f"{' '.join(words).capitalize()} {figure} units."


def body(rng: random.Random, paragraphs: int) -> list[tuple[str, str]]:
    return [
        (f"Section {i + 1} {rng.choice(WORDS)}", " ".join(sentence(rng) for _ in range(6)))
        for i in range(paragraphs)
    ]


def render(kind: str, sections: list[tuple[str, str]]) -> bytes:
    from tests import filebuilders as fb

    if kind == "md":
        return "\n\n".join(f"## {h}\n\n{t}" for h, t in sections).encode()
    if kind == "txt":
        return "\n\n".join(f"{h}\n{'=' * len(h)}\n{t}" for h, t in sections).encode("cp1252")
    if kind == "html":
        return fb.make_html("".join(f"<h2>{h}</h2><p>{t}</p>" for h, t in sections))
    if kind == "docx":
        blocks = []
        for h, t in sections:
            blocks += [("heading", 2, h), ("paragraph", t)]
        return fb.make_docx(blocks)
    return fb.make_pdf([f"{h}\n{t}" for h, t in sections])


def start_stack() -> Path:
    from config import embedded

    root = embedded.start_scratch_stack(prefix="chatbot-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return root


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--paragraphs", type=int, default=12)
    args = parser.parse_args()
    root = start_stack()
    worker = None
    try:
        from django.core.files.base import ContentFile

        from accounts.models import Role
        from accounts.policy import operator
        from knowledge.models import Chunk, Document
        from knowledge.services import document_upload

        role = Role.objects.create(name="bench")
        rng = random.Random(11)
        kinds = ["md", "txt", "html", "docx", "pdf"]
        files = [
            (
                f"doc{i}.{kinds[i % len(kinds)]}",
                render(kinds[i % len(kinds)], body(rng, args.paragraphs)),
            )
            for i in range(args.documents)
        ]
        total_bytes = sum(len(d) for _, d in files)
        print(
            f"corpus: {len(files)} documents ({', '.join(kinds)}), "
            f"{total_bytes / 1e6:.1f} MB of files"
        )

        log = open(root / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "ingest",
             "-c", "1", "-l", "warning", "--without-gossip", "--without-mingle"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        time.sleep(8)  # worker start-up (model load) is not part of the throughput
        started = time.perf_counter()
        for name, data in files:
            document_upload(
                actor=operator(label="bench"), file=ContentFile(data, name=name), roles=[role]
            )
        while Document.objects.exclude(status__in=["ready", "failed"]).exists():
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        failed = Document.objects.filter(status="failed").count()
        chunks = Chunk.objects.count()
        worker.terminate()
        worker.wait(30)

        texts = [
            f"{h}\n{t}" if h else t
            for h, t in Chunk.objects.order_by("id").values_list("heading", "text")
        ]
        from django.conf import settings

        from knowledge import embeddings

        embeddings.embed_passages(texts[:64], batch_size=settings.INGEST_EMBED_BATCH)  # warm up
        raw_started = time.perf_counter()
        embeddings.embed_passages(texts, batch_size=settings.INGEST_EMBED_BATCH)
        raw_elapsed = time.perf_counter() - raw_started
        tokens = sum(Chunk.objects.values_list("token_count", flat=True))

        print(
            f"chunks: {chunks} ({tokens / max(chunks, 1):.0f} tokens each on average), "
            f"failed documents: {failed}"
        )
        print(
            f"pipeline (upload -> worker -> ready): {elapsed:7.1f} s  "
            f"{len(files) / elapsed:6.2f} documents/s  {chunks / elapsed:7.1f} chunks/s"
        )
        print(
            f"raw embedder, same texts, in-process: {raw_elapsed:7.1f} s  "
            f"{'':>18} {chunks / raw_elapsed:7.1f} chunks/s"
        )
        print(f"pipeline / raw throughput: {raw_elapsed / elapsed * 100:.0f}%  (target >= 80%)")
    finally:
        if worker and worker.poll() is None:
            worker.kill()
        from django.db import connections

        connections.close_all()
        from config import embedded

        embedded.stop_scratch_stack(root)


if __name__ == "__main__":
    main()
