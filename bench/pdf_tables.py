"""PDF tables: which extractor gives each table row its own cells under its header.

Per PDF (the demo PDFs, the other demo sources with tables rendered as the demo renders
PDFs, and test PDFs built with fpdf2 in every border layout it draws, with short cells, an
empty one, and wrapped cells, and a table running over two pages with and without its
header repeated), and per extractor:

- pdfplumber: the shipped parser (knowledge/ingestion/parsers/pdf.py: pypdf opens and
  checks the file, pdfplumber reads each page's text and tables);
- pypdf layout: pypdf's extract_text(extraction_mode="layout"), each line cut into cells
  at runs of two or more spaces, a line with fewer cells than the header joined to the
  row above by column position (what one would build on layout mode);
- pypdf plain: what the parser did before (no cells at all; its time is the baseline).

"rows ok" counts the expected rows (headers included) that come out as a table line with
exactly the expected cells, in a table whose header line is the expected header; a row is
wrong when a cell is cut, glued to its neighbour, moved to another column or when the row
stands under another header. Time is the median over --runs, per page, in this process.

    python bench/pdf_tables.py [--runs 5] [--pages 100]
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pypdf import PdfReader  # noqa: E402

from knowledge import demo  # noqa: E402
from knowledge.demo import render  # noqa: E402
from knowledge.ingestion import sandbox  # noqa: E402
from knowledge.ingestion.parsers import parse_document  # noqa: E402
from tests import filebuilders as fb  # noqa: E402

SANDBOX_MB, SANDBOX_SECONDS = 1024, 120  # INGEST_PARSE_MAX_MEMORY_MB, _TIMEOUT_SECONDS
Table = tuple[tuple[str, ...], list[tuple[str, ...]]]  # (header, rows)

TYRES = [
    ["Component", "Pressure (cold)", "Tolerance"],
    ["Nose landing gear tyres", "58 psi (4.0 bar)", "+3/-0 psi"],
    ["Main landing gear tyres", "121 psi (8.3 bar)", "+5/-0 psi"],
    ["Tail bumper strut", "280 psi (19.3 bar)", ""],
]
WRAPPED = [
    ["Task", "Interval", "Reference"],
    ["Blade visual inspection (erosion, cracks, delamination)", "Daily check", "AMM 61-10-00"],
    ["Retention bolt torque check", "600 flight hours", "AMM 61-10-10"],
    [
        "Blade balance (dynamic)",
        "2,000 flight hours or after blade replacement, whichever comes first",
        "AMM 61-10-30",
    ],
    ["Propeller overhaul", "8,000 flight hours or 6 years", "CMM 61-10-05"],
]
GRADES = [["Grade", "Annual salary", "Step"]] + [
    [f"P{i}", f"EUR {40_000 + 1_500 * i:,}", f"step {i % 4}"] for i in range(1, 80)
]
LAYOUTS = (
    "ALL",
    "NONE",
    "HORIZONTAL_LINES",
    "SINGLE_TOP_LINE",
    "NO_HORIZONTAL_LINES",
    "INTERNAL",
    "MINIMAL",
)
BEFORE = "Check the values below before every release to service and record them on the card."
AFTER = "A value outside its tolerance grounds the aircraft until it has been corrected."


def _table(rows) -> Table:
    """Cells with their spaces collapsed, and a row's empty trailing cells left off (the
    parser leaves them off)."""
    clean = []
    for row in rows:
        cells = [" ".join(cell.split()) for cell in row]
        while cells and not cells[-1]:
            cells.pop()
        clean.append(tuple(cells))
    return clean[0], clean[1:]


def cases() -> list[tuple[str, bytes, list[Table]]]:
    built = []
    for name, rows in (("short", TYRES), ("wrapped", WRAPPED)):
        widths = (2, 2, 1) if name == "wrapped" else None
        for layout in LAYOUTS:
            data = fb.make_pdf_with_table(
                rows, before=BEFORE, after=AFTER, borders=layout, col_widths=widths
            )
            built.append((f"fpdf2 {name} cells, {layout}", data, [_table(rows)]))
    for layout in ("ALL", "NONE"):
        for repeat in (True, False):
            data = fb.make_pdf_with_table(
                GRADES, before=BEFORE, borders=layout, repeat_header=repeat
            )
            label = "header repeated" if repeat else "header once"
            built.append((f"fpdf2 2-page table, {label}, {layout}", data, [_table(GRADES)]))
    documents = {d.filename: d for d in demo.documents()}
    for entry in demo.CATALOGUE:
        if not entry.source.endswith(".md"):
            continue
        source = (ROOT / "knowledge" / "demo" / "content" / entry.source).read_text("utf-8")
        blocks = render.parse_blocks(source)
        tables = [
            _table([[render._latin1(cell) for cell in row] for row in block.rows])
            for block in blocks
            if isinstance(block, render.Table)
        ]
        if entry.filename.endswith(".pdf"):
            built.append((f"demo {entry.filename}", documents[entry.filename].data, tables))
        elif tables:  # a demo source with tables, rendered as the demo renders PDFs
            data = render.render_pdf(blocks, title=render.document_title(blocks))
            built.append((f"demo {entry.source} as PDF", data, tables))
    return built


# --- what each extractor yields, as tables -------------------------------------------------


def pipe_tables(text: str) -> list[Table]:
    """Tables as the parser writes them: runs of lines holding " | ", the first the header."""
    tables, lines = [], []
    for line in [*text.split("\n"), ""]:
        if " | " in line:
            lines.append(line)
            continue
        if lines:
            tables.append(_table([line.split(" | ") for line in lines]))
        lines = []
    return tables


def shipped(data: bytes) -> list[Table]:
    parsed = parse_document(data=data, filename="bench.pdf")
    return [table for section in parsed.sections for table in pipe_tables(section.text)]


_SEGMENT = re.compile(r"\S+(?: \S+)*")  # text between runs of two or more spaces


def layout_tables(text: str) -> list[Table]:
    tables: list[Table] = []
    starts: list[int] = []
    rows: list[list[str]] = []

    def close() -> None:
        if len(rows) >= 2:
            tables.append(_table(rows))

    for line in text.split("\n"):
        segments = [(m.start(), m.group()) for m in _SEGMENT.finditer(line)]
        if not segments:
            continue
        if not rows:
            if len(segments) >= 2:
                starts, rows = [s for s, _ in segments], [[t for _, t in segments]]
            continue
        first_start, first_text = segments[0]
        if len(segments) == 1 and first_start < starts[1] < first_start + len(first_text):
            close()  # prose across the columns: the table has ended
            starts, rows = [], []
            continue
        cells = [""] * len(starts)
        for start, segment in segments:
            column = max((i for i, s in enumerate(starts) if s <= start + 1), default=0)
            cells[column] = f"{cells[column]} {segment}".strip()
        if len(segments) >= len(starts):
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    close()
    return tables


def pypdf_layout(data: bytes) -> list[Table]:
    """Layout mode's tables, given what the shipped parser does across pages: a page whose
    first table has as many columns as the last one before it, under another first row,
    continues it (the header is carried over)."""
    reader = PdfReader(io.BytesIO(data))
    found: list[Table] = []
    for page in reader.pages:
        tables = layout_tables(page.extract_text(extraction_mode="layout"))
        if found and tables and len(tables[0][0]) == len(found[-1][0]):
            header, rows = tables[0]
            if header != found[-1][0]:
                tables[0] = (found[-1][0], [header, *rows])
        found.extend(tables)
    return found


def pypdf_plain(data: bytes) -> list[Table]:
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return pipe_tables(text)


EXTRACTORS = {"pdfplumber": shipped, "pypdf layout": pypdf_layout, "pypdf plain": pypdf_plain}


def rows_ok(expected: list[Table], found: list[Table]) -> tuple[int, int]:
    ok = total = 0
    for header, rows in expected:
        under_header = [set(r) for h, r in found if h == header]
        total += 1 + len(rows)
        ok += bool(under_header)
        ok += sum(1 for row in rows if any(row in got for got in under_header))
    return ok, total


def _timed(extract, data: bytes, runs: int) -> tuple[list[Table], float]:
    times, found = [], []
    for _ in range(runs):
        started = time.perf_counter()
        found = extract(data)
        times.append(time.perf_counter() - started)
    return found, statistics.median(times)


def long_document(pages: int) -> bytes:
    """A manual of `pages` pages: prose, a ruled table and a borderless one on each."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=False)
    for number in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(0, 5, (BEFORE + " " + AFTER + " ") * 6, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        for layout in ("ALL", "NONE"):
            with pdf.table(borders_layout=layout, text_align="LEFT", line_height=5) as table:
                for values in TYRES + [
                    [f"Item {number}-{i}", f"{i} psi", "none"] for i in range(8)
                ]:
                    row = table.row()
                    for value in values:
                        row.cell(value)
            pdf.ln(3)
    return bytes(pdf.output())


_PEAK = """
import sys, time
from knowledge.ingestion.parsers import import_every_format, parse_document

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024

import_every_format()  # what the parse helper has loaded before it forks a child
data = sys.stdin.buffer.read()
size = status("VmSize")
started = time.perf_counter()
parse_document(data=data, filename="long.pdf")
print(time.perf_counter() - started, size, status("VmPeak"), status("VmHWM"))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pages", type=int, default=100, help="pages of the long document")
    args = parser.parse_args()
    built = cases()
    names = list(EXTRACTORS)
    print(f"rows ok (headers included) and ms per page, median of {args.runs} runs")
    print(f"{'PDF':58} {'pages':>5}" + "".join(f" | {name:>19}" for name in names))
    totals = {name: [0, 0, 0.0, 0] for name in names}
    for label, data, expected in built:
        pages = len(PdfReader(io.BytesIO(data)).pages)
        cells = []
        for name, extract in EXTRACTORS.items():
            found, seconds = _timed(extract, data, args.runs)
            ok, total = rows_ok(expected, found)
            totals[name][0] += ok
            totals[name][1] += total
            totals[name][2] += seconds
            totals[name][3] += pages
            cells.append(f"{ok:>3}/{total:<3} {seconds / pages * 1000:7.1f} ms")
        print(f"{label:58} {pages:>5}" + "".join(f" | {cell:>19}" for cell in cells))
    summary = []
    for name in names:
        ok, total, seconds, pages = totals[name]
        summary.append(f"{ok:>3}/{total:<3} {seconds / pages * 1000:7.1f} ms")
    print(
        f"{'all (' + str(len(built)) + ' PDFs)':58} {'':>5}"
        + "".join(f" | {c:>19}" for c in summary)
    )
    for name in names:
        ok, total, *_ = totals[name]
        print(f"row accuracy {name}: {ok / total:.1%}")

    data = long_document(args.pages)
    result = subprocess.run(
        [sys.executable, "-c", _PEAK], input=data, capture_output=True, cwd=ROOT, check=True
    )
    seconds, size, peak, resident = result.stdout.decode().split()
    print(
        f"\nshipped parser, one fresh process, a {args.pages}-page PDF ({len(data) / 1e6:.1f} MB,"
        f" 2 tables a page): {float(seconds):.1f} s, {float(seconds) / args.pages * 1000:.0f} ms"
        f" a page; address space {size} MB before parsing, {peak} MB at most (the sandbox's"
        f" bound is on this), resident at most {resident} MB"
    )
    started = time.perf_counter()
    parsed = sandbox.parse_document_in_child(
        data=data, filename="long.pdf", max_memory_mb=SANDBOX_MB, timeout_seconds=SANDBOX_SECONDS
    )
    print(
        f"the same PDF in the parse sandbox ({SANDBOX_MB} MB, {SANDBOX_SECONDS} s, the defaults):"
        f" {len(parsed.sections)} pages parsed in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
