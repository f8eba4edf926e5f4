"""What parsing in a bounded child process costs per document (knowledge/ingestion/sandbox.py).

For small files of each format: the parse in-process (no bounds, the baseline), through a
parse helper started for the file (cold: an interpreter plus every parser library), and
through the warm helper a worker keeps, which forks a bounded child per file (what
ingestion does). Between files the script sleeps as long as a document's embedding takes.

    python bench/parse_child.py [--runs 9] [--gap 0.8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowledge.ingestion import sandbox  # noqa: E402
from knowledge.ingestion.parsers import parse_document  # noqa: E402
from tests import filebuilders as fb  # noqa: E402

BOUNDS = {"max_memory_mb": 1024, "timeout_seconds": 60}


def samples() -> dict[str, bytes]:
    return {
        "notes.md": b"# Notes\n\n" + b"Some text about fuel and crews. " * 500,
        "report.pdf": fb.make_pdf(["Quarterly text " * 200] * 3),
        "memo.docx": fb.make_docx([("paragraph", "Memo text " * 200)] * 3),
        "page.html": fb.make_html("<p>" + "Page text " * 500 + "</p>"),
    }


def _cold(data: bytes, name: str) -> None:
    sandbox._stop_helper()  # no helper: one is started for the file
    sandbox.parse_document_in_child(data=data, filename=name, **BOUNDS)
    sandbox._stop_helper()


def _ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--gap", type=float, default=0.8, help="seconds between files")
    args = parser.parse_args()
    files = samples()
    for name, data in files.items():  # warm the in-process imports
        parse_document(data=data, filename=name)
    print(f"median of {args.runs} runs per format, {args.gap} s between files")
    print(f"{'file':12} {'in-process':>10} {'cold child':>10} {'warm helper':>11}   ms")
    for name, data in files.items():
        timings = {"in": [], "cold": [], "warm": []}
        for _ in range(args.runs):
            started = time.perf_counter()
            parse_document(data=data, filename=name)
            timings["in"].append(time.perf_counter() - started)
            time.sleep(args.gap)
            started = time.perf_counter()
            _cold(data, name)
            timings["cold"].append(time.perf_counter() - started)
            sandbox._running_helper()  # as a worker's helper is, from its first document on
            time.sleep(args.gap)
            started = time.perf_counter()
            sandbox.parse_document_in_child(data=data, filename=name, **BOUNDS)
            timings["warm"].append(time.perf_counter() - started)
        print(f"{name:12} {_ms(timings['in'])}   {_ms(timings['cold'])}   {_ms(timings['warm'])}")


if __name__ == "__main__":
    main()
