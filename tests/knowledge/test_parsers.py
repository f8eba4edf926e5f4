"""Parsers and demo content: pure Python, no database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from knowledge import demo
from knowledge.ingestion import sandbox
from knowledge.ingestion.chunking import chunk_sections
from knowledge.ingestion.parsers import (
    SUPPORTED_EXTENSIONS,
    ParsedDocument,
    ParseError,
    Section,
    UnsupportedType,
    detect_kind,
    parse_document,
    supported_types_text,
)
from knowledge.ingestion.sandbox import parse_document_in_child
from tests import filebuilders as fb

MB = 1024 * 1024


def parse(data: bytes, filename: str, **kwargs) -> ParsedDocument:
    return parse_document(data=data, filename=filename, **kwargs)


def parse_error(data: bytes, filename: str, **kwargs) -> str:
    with pytest.raises(ParseError) as caught:
        parse_document(data=data, filename=filename, **kwargs)
    return str(caught.value)


def chunk_lines(parsed: ParsedDocument, *, chunk_tokens: int = 200) -> list[list[str]]:
    """Each chunk's lines, tokens counted as words (the chunker does not mind which)."""
    drafts = chunk_sections(
        parsed.sections, count_tokens=lambda text: len(text.split()), chunk_tokens=chunk_tokens
    )
    return [draft.text.split("\n") for draft in drafts]


def assert_rows_under_their_header(chunks: list[list[str]], header: str, rows: list[str]):
    """Every row on a line of its own, once, in a chunk whose table lines start with the
    header: the contract chatbot/answering reads tables by."""
    seen = []
    for lines in chunks:
        table = [line for line in lines if " | " in line]
        if table:
            assert table[0] == header, lines
            seen.extend(table[1:])
    assert seen == rows


# Neighbouring rows differ in one word and in their figures.
TYRE_HEADER = "Component | Pressure (cold) | Tolerance"
TYRE_ROWS = [
    "Nose landing gear tyres | 58 psi (4.0 bar) | +3/-0 psi",
    "Main landing gear tyres | 121 psi (8.3 bar) | +5/-0 psi",
]
TYRE_BEFORE = "Check the tyre pressures every morning before the first flight."
TYRE_AFTER = "A tyre below its tolerance is reinflated and checked again after one hour."


def tyre_table() -> list[list[str]]:
    return [line.split(" | ") for line in [TYRE_HEADER, *TYRE_ROWS]]


# --- registry ----------------------------------------------------------------------------

_HEAVY_PARSER_LIBRARIES = (
    "bs4",
    "markdown_it",
    "charset_normalizer",
    "pypdf",
    "pdfplumber",
    "pdfminer",
    "docx",
)


def test_importing_the_package_loads_no_parser_library():
    # A fresh interpreter: this test session has long since imported them all.
    code = (
        "import sys\n"
        "from knowledge.ingestion.parsers import kind_from_extension\n"
        "assert kind_from_extension('a.pdf') == 'pdf'\n"
        f"print([name for name in {_HEAVY_PARSER_LIBRARIES!r} if name in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.strip() == "[]"


# --- PDF ---------------------------------------------------------------------------------


def test_pdf_keeps_pages_headings_and_title():
    data = fb.make_pdf(
        ["Per diem is 45 euro a day.", "Hotels are capped at 140 euro.", "Taxis after 22:00."],
        title="Travel policy",
        headings=["Allowances", None, "Transport"],
    )

    parsed = parse(data, "travel.pdf")

    assert parsed.title == "Travel policy"
    assert parsed.sections == [
        Section(text="Per diem is 45 euro a day.", heading="Allowances", page=1),
        Section(text="Hotels are capped at 140 euro.", heading="Allowances", page=2),
        Section(text="Taxis after 22:00.", heading="Transport", page=3),
    ]


def test_pdf_page_without_text_is_skipped_but_numbering_kept():
    parsed = parse(fb.make_pdf(["one", "", "three"]), "a.pdf")

    assert [(s.page, s.text) for s in parsed.sections] == [(1, "one"), (3, "three")]


def test_pdf_title_falls_back_to_first_outline_entry():
    parsed = parse(fb.make_pdf(["text"], headings=["Maintenance manual"]), "m.pdf")

    assert parsed.title == "Maintenance manual"


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_pdf_encrypted_with_empty_user_password_is_read(algorithm):
    data = fb.make_pdf(
        ["Readable despite encryption."], encrypt_password="", encrypt_algorithm=algorithm
    )

    assert parse(data, "e.pdf").sections[0].text == "Readable despite encryption."


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_pdf_encrypted_with_password_is_refused(algorithm):
    data = fb.make_pdf(["secret"], encrypt_password="s3cret", encrypt_algorithm=algorithm)

    assert parse_error(data, "e.pdf") == "The PDF is encrypted; upload an unencrypted copy."


def test_pdf_image_only_needs_ocr():
    message = parse_error(fb.make_image_only_pdf(pages=2), "scan.pdf")

    assert message == (
        "The PDF has no extractable text (it looks scanned); "
        "scanned documents need OCR, which is not supported."
    )


@pytest.mark.parametrize("data", [fb.make_corrupt_pdf(), fb.make_truncated_pdf()])
def test_pdf_damaged(data):
    assert parse_error(data, "broken.pdf").startswith("The PDF is damaged and could not be read (")


def test_pdf_without_header_is_corrupt():
    message = parse_error(b"Just some words in a file called .pdf", "fake.pdf")

    assert message == "The PDF is corrupt: the file does not start with a PDF header."


# Drawn with every cell framed, with no line at all, with lines between rows only, and
# with a rule under the header and none between the rows.
@pytest.mark.parametrize("borders", ["ALL", "NONE", "HORIZONTAL_LINES", "NO_HORIZONTAL_LINES"])
def test_pdf_table_keeps_each_figure_in_its_own_row_under_its_header(borders):
    data = fb.make_pdf_with_table(
        tyre_table(), before=TYRE_BEFORE, after=TYRE_AFTER, borders=borders
    )

    parsed = parse(data, "daily-check.pdf")

    assert parsed.sections == [
        Section(
            text="\n\n".join([TYRE_BEFORE, "\n".join([TYRE_HEADER, *TYRE_ROWS]), TYRE_AFTER]),
            page=1,
        )
    ]
    assert chunk_lines(parsed) == [[TYRE_BEFORE, TYRE_HEADER, *TYRE_ROWS, TYRE_AFTER]]


@pytest.mark.parametrize("borders", ["ALL", "NONE"])
def test_pdf_table_cells_wrapped_over_several_lines_stay_in_their_row(borders):
    rows = [
        ["Task", "Interval", "Reference"],
        ["Blade visual inspection (erosion, cracks, delamination)", "Daily check", "AMM 61-10-00"],
        ["Retention bolt torque check", "600 flight hours", "AMM 61-10-10"],
        [
            "Blade balance (dynamic)",
            "2,000 flight hours or after a blade replacement",
            "AMM 61-10-30",
        ],
    ]
    data = fb.make_pdf_with_table(rows, borders=borders, col_widths=(2, 1, 1))

    assert parse(data, "intervals.pdf").text == "\n".join(" | ".join(row) for row in rows)


@pytest.mark.parametrize("borders", ["ALL", "NONE"])
@pytest.mark.parametrize("repeat_header", [True, False])
def test_pdf_table_over_two_pages_has_its_header_on_each_and_in_each_chunk(borders, repeat_header):
    header = ["Grade", "Annual salary", "Step"]
    rows = [[f"P{n}", f"EUR {40_000 + 1_500 * n:,}", f"step {n % 4}"] for n in range(1, 80)]
    data = fb.make_pdf_with_table([header, *rows], borders=borders, repeat_header=repeat_header)

    parsed = parse(data, "grades.pdf")
    chunks = chunk_lines(parsed, chunk_tokens=60)

    assert [s.page for s in parsed.sections] == [1, 2]
    assert all(s.text.startswith("Grade | Annual salary | Step\n") for s in parsed.sections)
    assert len(chunks) > 4
    assert_rows_under_their_header(chunks, " | ".join(header), [" | ".join(r) for r in rows])


@pytest.mark.parametrize("borders", ["ALL", "NONE"])
def test_pdf_table_empty_cells_keep_the_columns_of_the_cells_after_them(borders):
    rows = [
        ["", "Q3 2024", "Q3 2023"],
        ["Revenue", "EUR 48.7m", "EUR 44.4m"],
        ["Cargo", "", "EUR 0.4m"],
    ]

    text = parse(fb.make_pdf_with_table(rows, borders=borders), "q3.pdf").text

    assert text == "- | Q3 2024 | Q3 2023\nRevenue | EUR 48.7m | EUR 44.4m\nCargo |  | EUR 0.4m"


def test_pdf_ruled_table_header_over_two_columns_names_both_with_the_row_below():
    rows = [
        ["Grade", ("Annual salary", 2)],
        ["", "Minimum", "Maximum"],
        ["P2", "EUR 41,000", "EUR 49,000"],
        ["P3", "EUR 47,500", "EUR 56,000"],
    ]

    assert parse(fb.make_pdf_with_table(rows), "grades.pdf").text == (
        "Grade | Annual salary Minimum | Annual salary Maximum\n"
        "P2 | EUR 41,000 | EUR 49,000\n"
        "P3 | EUR 47,500 | EUR 56,000"
    )


def test_pdf_prose_set_in_two_columns_is_read_column_by_column_not_as_a_table():
    sentences = [f"Check number {n} is done before the first flight of the day." for n in range(60)]

    text = parse(fb.make_pdf_in_columns(" ".join(sentences)), "columns.pdf").text

    assert " | " not in text
    assert " ".join(text.split()) == " ".join(sentences)


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_pdf_encrypted_with_empty_user_password_keeps_its_tables(algorithm):
    data = fb.encrypt_pdf(fb.make_pdf_with_table(tyre_table()), password="", algorithm=algorithm)

    assert parse(data, "e.pdf").text == "\n".join([TYRE_HEADER, *TYRE_ROWS])


def test_pdf_page_pdfplumber_cannot_read_falls_back_to_pypdf_text(monkeypatch):
    from knowledge.ingestion.parsers import pdf

    def broken(page):
        raise KeyError("/Resources")

    monkeypatch.setattr(pdf, "page_blocks", broken)

    parsed = parse(fb.make_pdf(["Per diem is 45 euro a day."]), "travel.pdf")

    assert parsed.sections == [Section(text="Per diem is 45 euro a day.", page=1)]


# --- DOCX --------------------------------------------------------------------------------


def test_docx_heading_paths_and_tables_in_document_order():
    data = fb.make_docx(
        [
            ("title", "Travel policy"),
            ("paragraph", "Applies to all staff."),
            ("heading", 1, "Allowances"),
            ("heading", 2, "Per diem"),
            ("paragraph", "Daily amounts:"),
            ("table", [["Type", "Amount"], ["Domestic", "€45"], ["International", "€70"]]),
            ("paragraph", "No receipts needed."),
            ("heading", 1, "Approvals"),
            ("bullet", "Line manager for domestic trips."),
        ],
        title="Travel and expenses policy",
    )

    parsed = parse(data, "travel.docx")

    assert parsed.title == "Travel and expenses policy"
    assert parsed.sections == [
        Section(text="Applies to all staff.", heading="Travel policy"),
        Section(
            text=(
                "Daily amounts:\n\n"
                "Type | Amount\nDomestic | €45\nInternational | €70\n\n"
                "No receipts needed."
            ),
            heading="Travel policy > Allowances > Per diem",
        ),
        Section(text="Line manager for domestic trips.", heading="Travel policy > Approvals"),
    ]


def test_docx_title_falls_back_to_first_heading():
    data = fb.make_docx([("heading", 1, "Parental leave"), ("paragraph", "26 weeks.")])

    assert parse(data, "leave.docx").title == "Parental leave"


def test_docx_table_rows_keep_their_cells_under_the_header_through_chunking():
    rows = [
        ["Grade", "Annual salary", "Review"],
        ["P2", "€41,000", "March"],
        ["P3", "€47,500", "May"],
    ]
    data = fb.make_docx(
        [
            ("heading", 1, "Pay grades"),
            ("paragraph", "Salaries from 1 January."),
            ("table", rows),
            ("paragraph", "Grades are reviewed every year."),
        ]
    )

    chunks = chunk_lines(parse(data, "grades.docx"))

    assert chunks == [
        [
            "Salaries from 1 January.",
            "Grade | Annual salary | Review",
            "P2 | €41,000 | March",
            "P3 | €47,500 | May",
            "Grades are reviewed every year.",
        ]
    ]


def test_docx_merged_cells_fill_every_column_they_cover_and_empty_cells_stay():
    rows = [
        ["Grade", "Salary", ""],
        ["", "Minimum", "Maximum"],
        ["P2", "€41,000", "€49,000"],
        ["P3", "€47,500\n(from May)", ""],
        ["P4 | P5", "", "€66,000"],
    ]
    # "Salary" over both salary columns; "Grade" over two rows.
    data = fb.make_docx([("table", rows, {"merge": [((0, 1), (0, 2)), ((0, 0), (1, 0))]})])

    assert parse(data, "grades.docx").text == (
        "Grade | Salary Minimum | Salary Maximum\n"
        "P2 | €41,000 | €49,000\n"
        "P3 | €47,500 (from May)\n"
        "P4 / P5 |  | €66,000"
    )


def test_docx_rows_marked_as_header_make_one_header_line_under_the_table_title():
    rows = [
        ["Pay grades 2025", "", ""],
        ["Grade", "Minimum", "Maximum"],
        ["", "per year", "per year"],
        ["P2", "€41,000", "€49,000"],
    ]
    data = fb.make_docx([("table", rows, {"merge": [((0, 0), (0, 2))], "header_rows": 3})])

    assert parse(data, "grades.docx").text == (
        "Pay grades 2025\n\nGrade | Minimum per year | Maximum per year\nP2 | €41,000 | €49,000"
    )


def test_docx_not_a_zip():
    message = parse_error(b"This is plain text renamed to .docx", "x.docx")

    assert message == "The DOCX file is not a valid Word document (not a zip archive)."


def test_docx_that_is_an_old_doc_file():
    message = parse_error(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "old.docx")

    assert "old-style Word .doc" in message


def test_docx_zip_without_word_content():
    message = parse_error(fb.make_zip_without_document(), "x.docx")

    assert message.startswith("The DOCX file is not a valid Word document")


def test_docx_zip_bomb_refused_before_unpacking():
    message = parse_error(fb.make_zip_bomb_docx(201 * MB), "bomb.docx")

    assert message == (
        "The DOCX expands to more than 200 MB when unpacked; "
        "refusing to open it (possible zip bomb)."
    )


def test_docx_unpacked_limit_is_configurable():
    message = parse_error(fb.make_zip_bomb_docx(3 * MB), "bomb.docx", max_unpacked_bytes=2 * MB)

    assert "more than 2 MB when unpacked" in message


def test_docx_extreme_compression_ratio_is_refused_below_the_size_limit():
    message = parse_error(fb.make_zip_bomb_docx(20 * MB), "bomb.docx")

    assert "possible zip bomb" in message
    assert "compressed" in message


# --- HTML --------------------------------------------------------------------------------


def test_html_drops_scripts_styles_and_keeps_structure():
    data = fb.make_html(
        """
        <nav><a href="/">Home</a> <a href="/policies">Policies</a></nav>
        <h1>Line maintenance</h1>
        <p>Check the   aircraft<br>every morning.</p>
        <script>var leaked = "SCRIPT-CANARY";</script>
        <noscript>NOSCRIPT-CANARY</noscript>
        <template><p>TEMPLATE-CANARY</p></template>
        <!-- COMMENT-CANARY -->
        <h2>Tyres</h2>
        <ul><li>Main gear: 121 psi</li><li>Nose gear: 58 psi</li></ul>
        <table><tr><th>Item</th><th>Limit</th></tr><tr><td>Cut depth</td><td>3 mm</td></tr></table>
        <h3>Brakes</h3>
        <div>Wear pin at least <b>1 mm</b>.</div>
        """,
        title="Daily check",
        head="<style>.x { content: 'STYLE-CANARY'; }</style><script>HEAD-CANARY()</script>",
    )

    parsed = parse(data, "check.html")

    assert parsed.title == "Daily check"
    assert "CANARY" not in parsed.text
    assert "Home" not in parsed.text
    assert parsed.sections == [
        Section(text="Check the aircraft\nevery morning.", heading="Line maintenance"),
        Section(
            text="Main gear: 121 psi\n\nNose gear: 58 psi\n\nItem | Limit\nCut depth | 3 mm",
            heading="Line maintenance > Tyres",
        ),
        Section(text="Wear pin at least 1 mm.", heading="Line maintenance > Tyres > Brakes"),
    ]


def test_html_title_falls_back_to_h1_and_htm_extension_works():
    parsed = parse(fb.make_html("<h1>Noticeboard</h1><p>News.</p>", title=None), "n.htm")

    assert parsed.title == "Noticeboard"


def test_html_table_rows_keep_their_cells_under_the_header_through_chunking():
    data = fb.make_html(
        "<h1>Pay</h1><p>Salaries from 1 January.</p>"
        "<table><caption>Pay grades</caption>"
        "<thead><tr><th>Grade</th><th>Annual salary</th></tr></thead>"
        "<tbody><tr><td>P2</td><td>€41,000</td></tr><tr><td>P3</td><td>€47,500</td></tr></tbody>"
        "</table><p>Reviewed every year.</p>"
    )

    chunks = chunk_lines(parse(data, "pay.html"))

    assert chunks == [
        [
            "Salaries from 1 January. Pay grades",
            "Grade | Annual salary",
            "P2 | €41,000",
            "P3 | €47,500",
            "Reviewed every year.",
        ]
    ]


@pytest.mark.parametrize("filename", ["grades.docx", "grades.html"])
def test_docx_and_html_long_table_has_its_header_at_the_start_of_each_chunk(filename):
    header = ["Grade", "Annual salary", "Review"]
    rows = [[f"P{n}", f"€{40_000 + 1_500 * n:,}", f"month {n % 12 + 1}"] for n in range(1, 60)]
    if filename.endswith(".docx"):
        data = fb.make_docx([("paragraph", "Pay grades."), ("table", [header, *rows])])
    else:
        lines = [f"<tr>{''.join(f'<th>{c}</th>' for c in header)}</tr>"]
        lines += [f"<tr>{''.join(f'<td>{c}</td>' for c in row)}</tr>" for row in rows]
        data = fb.make_html(f"<p>Pay grades.</p><table>{''.join(lines)}</table>")

    chunks = chunk_lines(parse(data, filename), chunk_tokens=60)

    assert len(chunks) > 4
    assert_rows_under_their_header(chunks, " | ".join(header), [" | ".join(r) for r in rows])


def test_html_table_spans_header_rows_and_empty_cells_keep_the_columns():
    data = fb.make_html(
        """
        <table>
          <thead>
            <tr><th rowspan="2">Grade</th><th colspan="2">Salary</th></tr>
            <tr><th>Minimum</th><th>Maximum</th></tr>
          </thead>
          <tr><td>P2</td><td>€41,000</td><td>€49,000</td></tr>
          <tr><td rowspan="2">P3</td><td>€47,500</td><td></td></tr>
          <tr><td>€48,000<br>(from May)</td><td>€60,000</td></tr>
          <tr><td></td><td>a | b</td><td>€1</td></tr>
        </table>
        <table>
          <tr><th>Station</th><th>Manager</th></tr>
          <tr><th>Kestel Bay</th><td>José Núñez</td></tr>
        </table>
        """
    )

    assert parse(data, "grades.html").text == (
        "Grade | Salary Minimum | Salary Maximum\n"
        "P2 | €41,000 | €49,000\n"
        "P3 | €47,500\n"
        "P3 | €48,000 (from May) | €60,000\n"
        "- | a / b | €1\n\n"
        "Station | Manager\n"
        "Kestel Bay | José Núñez"
    )


def test_html_deeply_nested_markup_does_not_hit_the_recursion_limit():
    body = "<div>" * 5000 + "<p>deep text</p>" + "</div>" * 5000

    assert parse(fb.make_html(body), "deep.html").text == "deep text"


def test_html_with_only_markup_has_no_text():
    data = fb.make_html("<script>only()</script><div>   </div>", title=None)

    assert parse_error(data, "empty.html") == "The document contains no text."


# --- Markdown ----------------------------------------------------------------------------


def test_markdown_heading_paths_code_and_tables():
    text = (
        "# Safety reporting\n\nReport **every** occurrence.\n\n"
        "## How\n\nUse form [SR-12](https://intranet/sr12)\nwithin 72 hours.\n\n"
        "```\nsr12 submit --urgent\n```\n\n"
        "### Contacts\n\n- Duty phone: 6999\n- Email: safety@example\n\n"
        "## Records\n\n| Record | Years |\n|---|---|\n| Reports | 10 |\n"
    )

    parsed = parse(fb.make_text(text), "safety.md")

    assert parsed.title == "Safety reporting"
    assert parsed.sections == [
        Section(text="Report every occurrence.", heading="Safety reporting"),
        Section(
            text="Use form SR-12 within 72 hours.\n\nsr12 submit --urgent",
            heading="Safety reporting > How",
        ),
        Section(
            text="Duty phone: 6999\n\nEmail: safety@example",
            heading="Safety reporting > How > Contacts",
        ),
        Section(text="Record | Years\nReports | 10", heading="Safety reporting > Records"),
    ]


def test_markdown_without_h1_has_no_title():
    parsed = parse(fb.make_text("## Only a subsection\n\nText."), "notes.markdown")

    assert parsed.title is None
    assert parsed.sections == [Section(text="Text.", heading="Only a subsection")]


# --- plain text --------------------------------------------------------------------------


def test_text_cp1252_is_decoded_with_its_accents():
    text = (
        "Station managers\n================\n\n"
        "Saint-Élouan: Hélène Marchetti, café opens at 05:00, coffee costs €1.80.\n"
        "Kestel Bay: José Núñez. Île-Verte: Søren Kjær. Ramp: Zoë Åkesson.\n"
    )

    parsed = parse(fb.make_text(text, encoding="cp1252"), "stations.txt")

    assert parsed.title == "Station managers"
    assert parsed.sections == [
        Section(
            text=(
                "Saint-Élouan: Hélène Marchetti, café opens at 05:00, coffee costs €1.80.\n"
                "Kestel Bay: José Núñez. Île-Verte: Søren Kjær. Ramp: Zoë Åkesson."
            ),
            heading="Station managers",
        )
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_text_unicode_encodings(encoding):
    parsed = parse(
        fb.make_text("Zoë paid €45.\r\n\r\n\r\nNext   paragraph.", encoding=encoding), "a.txt"
    )

    assert parsed.sections == [Section(text="Zoë paid €45.\n\nNext paragraph.")]
    assert parsed.title is None


def test_text_whitespace_is_normalised():
    raw = "A\u00a0 line\twith   gaps \u200b\n\n\n\n\nnext\x0cpage\n"

    assert parse(fb.make_text(raw), "a.text").text == "A line with gaps\n\nnext\npage"


def test_text_binary_junk_is_refused():
    message = parse_error(fb.make_binary_junk(), "program.txt")

    assert message == "The file does not look like text (it contains binary data)."


@pytest.mark.parametrize("filename", ["junk.txt", "junk.md"])
def test_text_undecodable_is_refused(filename):
    message = parse_error(fb.make_undecodable_text(), filename)

    assert message == "The text could not be decoded: it is not UTF-8 and no other encoding fits."


# --- empty files and types ---------------------------------------------------------------


@pytest.mark.parametrize("filename", ["a.pdf", "a.docx", "a.html", "a.md", "a.txt"])
@pytest.mark.parametrize("data", [b"", b"  \r\n\t \n"])
def test_empty_file(filename, data):
    assert parse_error(data, filename) == "The file is empty."


@pytest.mark.parametrize("filename", ["a.md", "a.txt"])
def test_file_of_invisible_characters_has_no_text(filename):
    data = fb.make_text("\u200b\u00ad\n\n\ufeff")

    assert parse_error(data, filename) == "The document contains no text."


@pytest.mark.parametrize("filename", ["payload.exe", "sheet.xlsx", "README", "archive.tar.gz"])
def test_unsupported_type_lists_supported_types(filename):
    with pytest.raises(UnsupportedType) as caught:
        parse(b"anything", filename)

    message = str(caught.value)
    assert "not supported" in message
    assert supported_types_text() in message
    for extension in SUPPORTED_EXTENSIONS:
        assert extension in message


def test_detect_kind_by_extension_any_case():
    assert detect_kind("Report.PDF", b"%PDF-1.4") == "pdf"
    assert detect_kind("a.docx", b"PK\x03\x04") == "docx"
    assert detect_kind("page.htm", b"<html>") == "html"
    assert detect_kind("notes.markdown", b"# x") == "markdown"
    assert detect_kind("notes.txt", b"x") == "text"


# --- demo workspace ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_documents():
    return demo.documents()


@pytest.fixture(scope="module")
def demo_parsed(demo_documents):
    return {doc.filename: parse(doc.data, doc.filename) for doc in demo_documents}


def test_demo_every_document_parses_to_several_sections(demo_documents, demo_parsed):
    assert len(demo_documents) >= 14
    for doc in demo_documents:
        parsed = demo_parsed[doc.filename]
        assert len(parsed.text.split()) >= 300, doc.filename
        assert len(parsed.sections) >= 3, doc.filename
        assert all(section.heading for section in parsed.sections[1:]), doc.filename


def test_demo_covers_every_format_and_role(demo_documents):
    extensions = [doc.filename.rsplit(".", 1)[1] for doc in demo_documents]
    for extension in ("pdf", "docx", "html"):
        assert extensions.count(extension) >= 2
    assert {"md", "txt"} <= set(extensions)

    role_names = demo.role_names()
    assert sorted(role_names) == ["everyone", "finance", "hr", "legal", "operations"]
    used_roles = {role for doc in demo_documents for role in doc.roles}
    assert used_roles == set(role_names)
    assert any(len(doc.roles) >= 2 for doc in demo_documents)
    assert len({doc.filename for doc in demo_documents}) == len(demo_documents)


def test_demo_users_hold_known_roles():
    role_names = set(demo.role_names())
    for user in demo.USERS:
        assert set(user["roles"]) <= role_names
    assert [u["roles"] for u in demo.USERS if u["roles"] == ["everyone"]]
    assert [u for u in demo.USERS if len(set(u["roles"]) - {"everyone"}) >= 2]


def test_demo_titles_match_the_parsed_titles(demo_documents, demo_parsed):
    for doc in demo_documents:
        parsed_title = demo_parsed[doc.filename].title
        assert parsed_title in (doc.title, None), doc.filename


def test_demo_has_a_non_utf8_text_document(demo_documents, demo_parsed):
    (doc,) = [d for d in demo_documents if d.filename == "station-directory.txt"]

    with pytest.raises(UnicodeDecodeError):
        doc.data.decode("utf-8")
    assert "Hélène Marchetti" in demo_parsed[doc.filename].text


def test_demo_facts_live_only_in_documents_their_role_may_see(demo_documents, demo_parsed):
    for question, (expected, role) in demo.FACTS.items():
        holders = [d for d in demo_documents if expected in demo_parsed[d.filename].text]
        assert holders, question
        for doc in holders:
            assert role in doc.roles, (question, doc.filename)


def test_demo_injection_is_in_an_everyone_document_and_reaches_the_text(
    demo_documents, demo_parsed
):
    (doc,) = [d for d in demo_documents if d.filename == demo.INJECTION_DOCUMENT]

    assert doc.roles == ["everyone"]
    assert demo.INJECTION_TEXT in demo_parsed[doc.filename].text
    q3_revenue = demo.FACTS["What was Veluna Air's revenue in Q3 2024?"][0]
    assert q3_revenue not in demo_parsed[doc.filename].text


def test_demo_rendering_and_parsing_are_deterministic(demo_documents, demo_parsed):
    again = demo.documents()

    assert [(d.filename, d.data) for d in again] == [(d.filename, d.data) for d in demo_documents]
    for doc in again:
        assert parse(doc.data, doc.filename) == demo_parsed[doc.filename]


# --- bounds on crafted files -------------------------------------------------------------


def test_docx_with_more_xml_than_the_bound_is_refused_before_parsing():
    data = fb.make_docx_xml_bomb(xml_bytes=21 * MB)
    assert len(data) * 100 > 21 * MB  # compressed too little for the zip-bomb ratio guard

    started = time.monotonic()
    message = parse_error(data, "bomb.docx")

    assert message == (
        "The DOCX holds more than 20 MB of XML when unpacked; "
        "refusing to parse it (possible XML bomb)."
    )
    assert time.monotonic() - started < 3


def test_docx_xml_bound_is_configurable():
    data = fb.make_docx_xml_bomb(xml_bytes=3 * MB)

    assert "more than 2 MB of XML" in parse_error(data, "x.docx", max_xml_bytes=2 * MB)
    assert parse(data, "x.docx").text.startswith("The Falcon reserve is 7,310 units.")


def test_docx_with_too_many_xml_elements_is_refused_before_parsing():
    data = fb.make_docx_xml_bomb(empty_paragraphs=1_100_000)
    assert len(data) * 100 > 1_100_000 * len(b"<w:p/>")

    started = time.monotonic()
    message = parse_error(data, "many.docx")

    assert message == (
        "The DOCX holds more than 1,000,000 XML elements; refusing to parse it (possible XML bomb)."
    )
    assert time.monotonic() - started < 3


def test_pdf_stream_that_expands_past_the_limit_is_refused():
    data = fb.make_exploding_pdf(40 * MB)
    assert len(data) < 100_000

    started = time.monotonic()
    message = parse_error(data, "exploding.pdf")

    assert message == (
        "The PDF contains a stream that expands beyond the safety limit; refusing to read it."
    )
    assert time.monotonic() - started < 5


def test_pdf_stream_under_the_limit_is_read():
    assert "Falcon reserve" in parse(fb.make_exploding_pdf(1 * MB), "spacious.pdf").text


# --- the parse child: memory and time bounds ---------------------------------------------


def in_child(data: bytes, filename: str, **bounds) -> ParsedDocument:
    bounds = {"max_memory_mb": 1024, "timeout_seconds": 60, **bounds}
    return parse_document_in_child(data=data, filename=filename, **bounds)


def child_error(data: bytes, filename: str, **bounds) -> str:
    with pytest.raises(ParseError) as caught:
        in_child(data, filename, **bounds)
    return str(caught.value)


def test_child_returns_what_the_parser_returns():
    samples = {
        "book.pdf": fb.make_pdf(["Intro text.", "Body \u00e9t\u00e9."], headings=["Intro", "Body"]),
        "memo.docx": fb.make_docx([("heading", 1, "Caf\u00e9"), ("paragraph", "\u4e2d\u6587")]),
        "page.html": fb.make_html("<h1>Falcon</h1><p>Reserve \U0001f985.</p>"),
        "notes.md": b"# Notes\n\nSome <b>text</b>.\n\n<div>raw html</div>\n",
    }
    for name, data in samples.items():
        assert in_child(data, name) == parse(data, name), name


def test_each_file_is_parsed_in_its_own_child_forked_from_one_warm_helper():
    in_child(b"# One\n\nfirst", "one.md")
    helper = sandbox._helper
    assert helper.poll() is None  # waiting, parsers imported, for the next file

    assert in_child(b"# Two\n\nsecond", "two.md").sections[0].text == "second"

    assert sandbox._helper is helper and helper.poll() is None
    assert psutil.Process(helper.pid).children() == []  # each file's child has ended


def test_child_keeps_the_parsers_reasons():
    assert child_error(fb.make_corrupt_pdf(), "c.pdf") == parse_error(
        fb.make_corrupt_pdf(), "c.pdf"
    )
    assert child_error(b"  \n", "blank.txt") == "The file is empty."
    with pytest.raises(UnsupportedType, match="Supported types"):
        in_child(b"MZ", "tool.exe")
    bomb = fb.make_docx_xml_bomb(xml_bytes=3 * MB)
    assert "more than 2 MB of XML" in child_error(bomb, "x.docx", max_xml_bytes=2 * MB)


def test_child_that_runs_out_of_memory_fails_naming_the_memory_bound():
    # About 400 MB of line strings for 20 MB of text.
    message = child_error(fb.make_short_lines_text(20 * MB), "lines.txt", max_memory_mb=256)

    assert message.startswith("Parsing the file needed more than the 256 MB memory limit")


def test_child_past_the_time_bound_is_killed_and_named():
    started = time.monotonic()
    message = child_error(fb.make_slow_markdown(4 * MB), "slow.md", timeout_seconds=1)

    assert message.startswith("Parsing the file took longer than the 1 s time limit")
    assert time.monotonic() - started < 5
    assert _parse_children() == []  # the file's child is gone; the helper waits for more


def test_child_killed_by_a_signal_fails_naming_the_signal():
    outcome = {}

    def parse_slowly():
        try:
            in_child(fb.make_slow_markdown(8 * MB), "slow.md")
        except ParseError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=parse_slowly)
    thread.start()
    deadline = time.monotonic() + 30
    while not (children := _parse_children()) and time.monotonic() < deadline:
        time.sleep(0.05)
    (child,) = children
    os.kill(child.pid, signal.SIGSEGV)
    thread.join(timeout=30)

    assert outcome["error"].startswith("The parser crashed on this file (it was killed by SIGSEGV)")


def _parse_children() -> list[psutil.Process]:
    """The children this process's parse helper has forked (a file being parsed). Only this
    process's helper: the session's Celery worker has one too."""
    helper = sandbox._helper
    if helper is None or helper.poll() is not None:
        return []
    try:
        return psutil.Process(helper.pid).children()
    except psutil.NoSuchProcess:
        return []


def test_child_imports_neither_django_nor_the_models():
    imported = set()
    samples = {
        "a.pdf": fb.make_pdf(["text"]),
        "a.docx": fb.make_docx([("paragraph", "text")]),
        "a.html": fb.make_html("<p>text</p>"),
        "a.md": b"# A\n\ntext <div>html</div>\n",
        "a.txt": fb.make_text("caf\u00e9", encoding="cp1252"),
    }
    for name, data in samples.items():
        request = sandbox.encode_request(
            data=data, filename=name, max_memory_mb=1024, timeout_seconds=60
        )
        result = subprocess.run(
            sandbox.child_command(),
            input=request,
            capture_output=True,
            env={**sandbox.child_environment(), "PYTHONPROFILEIMPORTTIME": "1"},
            check=True,
        )
        assert b'"outcome": "parsed"' in result.stdout
        for line in result.stderr.decode().splitlines():
            if line.startswith("import time:") and "|" in line:
                imported.add(line.rsplit("|", 1)[1].strip().split(".")[0])

    assert {"pypdf", "pdfplumber", "docx", "bs4", "markdown_it"} <= imported
    assert not imported & {"django", "torch", "transformers", "numpy", "celery", "psycopg"}
