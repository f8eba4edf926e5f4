"""Build test documents in code, good and bad, so no binary fixtures are committed.

Every builder is deterministic unless it encrypts (encryption salts are random).
"""

from __future__ import annotations

import datetime as dt
import io
import random
import zipfile
from collections.abc import Sequence

from knowledge.demo.render import normalise_zip

_FIXED_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

# A docx block: ("title", text) | ("heading", level, text) | ("paragraph", text)
#               | ("bullet", text) | ("table", rows) | ("table", rows, options)
# Table options: "merge": [((row, column), (row, column)), ...], the corners of cells to
# merge (python-docx's cell.merge), and "header_rows": n, the first n rows marked "repeat
# as header row" (w:tblHeader).
DocxBlock = tuple


def make_pdf(
    pages: Sequence[str],
    *,
    title: str | None = None,
    encrypt_password: str | None = None,
    encrypt_algorithm: str = "RC4-128",
    headings: Sequence[str | None] | None = None,
) -> bytes:
    """One PDF page per string (Latin-1 text). headings[i], when given, becomes an outline
    entry (bookmark) pointing at page i+1. encrypt_password="" encrypts with an empty user
    password (opens without one); any other string needs that password. encrypt_algorithm is
    pypdf's name: "RC4-128", "AES-128" or "AES-256" (AES needs the cryptography package)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    if title is not None:
        pdf.set_title(title)
    for index, text in enumerate(pages):
        pdf.add_page()
        heading = headings[index] if headings and index < len(headings) else None
        if heading:
            pdf.start_section(heading)
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, text)
    data = bytes(pdf.output())
    if encrypt_password is None:
        return data
    return encrypt_pdf(data, password=encrypt_password, algorithm=encrypt_algorithm)


def make_pdf_with_table(
    rows: Sequence[Sequence[str | tuple[str, int]]],
    *,
    before: str = "",
    after: str = "",
    borders: str = "ALL",
    repeat_header: bool = True,
    col_widths: Sequence[float] | None = None,
) -> bytes:
    """One A4 page (more if the table needs them) in Helvetica 10 pt: the paragraph before,
    the table (rows[0] its header, in bold) and the paragraph after (Latin-1 text). borders
    is fpdf2's TableBordersLayout: "ALL" frames every cell, "NONE" draws no line at all,
    "HORIZONTAL_LINES", "SINGLE_TOP_LINE", "NO_HORIZONTAL_LINES", "INTERNAL" and "MINIMAL"
    some of them. A cell given as (text, n) spans n columns. A table that runs onto the
    next page repeats its header there unless repeat_header is False."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    if before:
        pdf.multi_cell(0, 5.5, before, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    with pdf.table(
        borders_layout=borders,
        repeat_headings=1 if repeat_header else 0,
        col_widths=tuple(col_widths) if col_widths else None,
        text_align="LEFT",
        line_height=5.5,
    ) as table:
        for values in rows:
            row = table.row()
            for value in values:
                text, colspan = value if isinstance(value, tuple) else (value, 1)
                row.cell(text, colspan=colspan)
    if after:
        pdf.ln(3)
        pdf.multi_cell(0, 5.5, after, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def make_pdf_in_columns(text: str, *, columns: int = 2) -> bytes:
    """One A4 page of justified prose set in columns (Helvetica 10 pt, Latin-1 text)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    with pdf.text_columns(ncols=columns, gutter=8, text_align="JUSTIFY") as body:
        body.write(text)
    return bytes(pdf.output())


def encrypt_pdf(data: bytes, *, password: str, algorithm: str = "RC4-128") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=password, owner_password="owner-secret", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_image_only_pdf(*, pages: int = 1) -> bytes:
    """Pages with only drawn shapes: what a scan looks like to a text extractor."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    for _ in range(pages):
        pdf.add_page()
        pdf.set_fill_color(40, 40, 40)
        pdf.rect(20, 20, 170, 250, style="F")
        pdf.set_draw_color(200, 0, 0)
        pdf.line(20, 20, 190, 270)
    return bytes(pdf.output())


def make_corrupt_pdf() -> bytes:
    """Starts like a PDF, then nothing a reader can use."""
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R\n" + b"\x17" * 300


def make_truncated_pdf() -> bytes:
    """A real PDF cut off after its first 40% (an interrupted upload or download)."""
    data = make_pdf(["First page text."] * 3)
    return data[: len(data) * 2 // 5]


def make_docx(blocks: Sequence[DocxBlock], *, title: str | None = None) -> bytes:
    """blocks in document order, see DocxBlock; a table's first row is its header."""
    import docx

    document = docx.Document()
    properties = document.core_properties
    properties.title = title or ""
    properties.created = properties.modified = _FIXED_DATE.replace(tzinfo=None)
    for block in blocks:
        kind = block[0]
        if kind == "title":
            document.add_heading(block[1], level=0)
        elif kind == "heading":
            document.add_heading(block[2], level=block[1])
        elif kind == "paragraph":
            document.add_paragraph(block[1])
        elif kind == "bullet":
            document.add_paragraph(block[1], style="List Bullet")
        elif kind == "table":
            rows = block[1]
            options = block[2] if len(block) > 2 else {}
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for row, values in zip(table.rows, rows, strict=True):
                for cell, value in zip(row.cells, values, strict=True):
                    cell.text = value
            for (r0, c0), (r1, c1) in options.get("merge", ()):
                table.cell(r0, c0).merge(table.cell(r1, c1))
            for row in table.rows[: options.get("header_rows", 0)]:
                _mark_docx_header_row(row)
        else:
            raise ValueError(f"Unknown docx block {kind!r}")
    buffer = io.BytesIO()
    document.save(buffer)
    return normalise_zip(buffer.getvalue())


def _mark_docx_header_row(row) -> None:
    from docx.oxml import OxmlElement

    row._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))


_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="xml" ContentType="application/xml"/></Types>'
)
_DOCUMENT_START = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    b"<w:body><w:p><w:r><w:t>bomb</w:t></w:r></w:p>"
)
_DOCUMENT_END = b"</w:body></w:document>"


def make_zip_bomb_docx(unpacked_bytes: int) -> bytes:
    """A .docx-shaped zip whose word/document.xml really inflates to about unpacked_bytes
    (XML padded with spaces, ~1000:1). 201 MB takes about half a second to build."""
    padding = max(unpacked_bytes - len(_DOCUMENT_START) - len(_DOCUMENT_END), 0)
    block = b" " * (1024 * 1024)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(_zip_info("[Content_Types].xml"), _CONTENT_TYPES)
        with archive.open(_zip_info("word/document.xml"), "w", force_zip64=True) as member:
            member.write(_DOCUMENT_START)
            for _ in range(padding // len(block)):
                member.write(block)
            member.write(b" " * (padding % len(block)))
            member.write(_DOCUMENT_END)
    return buffer.getvalue()


def make_zip_without_document() -> bytes:
    """A valid zip named .docx that holds no Word document."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_zip_info("notes.txt"), b"not a word document")
    return buffer.getvalue()


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def make_html(body: str, *, title: str | None = "Test page", head: str = "") -> bytes:
    """A UTF-8 page around body (HTML markup); head is extra markup inside <head>."""
    title_tag = f"<title>{title}</title>" if title is not None else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"{title_tag}{head}</head>\n<body>\n{body}\n</body></html>\n"
    ).encode()


def make_text(text: str, *, encoding: str = "utf-8") -> bytes:
    return text.encode(encoding)


def make_binary_junk(size: int = 4096, *, seed: int = 7) -> bytes:
    """Random bytes, NULs included: an executable or image renamed to .txt."""
    return random.Random(seed).randbytes(size)


def make_undecodable_text(size: int = 4096, *, seed: int = 7) -> bytes:
    """Random bytes without NULs: no text encoding makes sense of them."""
    return random.Random(seed).randbytes(size).replace(b"\x00", b"\x01")


def make_docx_with_document_xml(document_xml: bytes) -> bytes:
    """A real Word document (made by python-docx) whose word/document.xml is replaced."""
    original = make_docx([("paragraph", "placeholder")])
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(original)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "word/document.xml":
                data = document_xml
            archive.writestr(_zip_info(member.filename), data)
    return buffer.getvalue()


_WORD_NAMESPACE = b"http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def make_docx_xml_bomb(
    *, xml_bytes: int = 0, empty_paragraphs: int = 0, ratio: int = 50, seed: int = 7
) -> bytes:
    """A real .docx whose document.xml holds one paragraph of text, `empty_paragraphs` empty
    ones (<w:p/>) and whitespace up to about xml_bytes, salted with random hex so that it
    compresses only about ratio:1: under the zip-bomb ratio guard (100:1), so only bounds on
    the XML itself can refuse it. 20 MB of XML makes a file of about 0.5 MB."""
    start = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w="'
        + _WORD_NAMESPACE
        + b'"><w:body><w:p><w:r><w:t>The Falcon reserve is 7,310 units.</w:t></w:r></w:p>'
    )
    end = b"</w:body></w:document>"
    paragraphs = b"<w:p/>" * empty_paragraphs
    size = max(xml_bytes, len(start) + len(paragraphs) + len(end))
    # Hex digits deflate to about half their size.
    salt = random.Random(seed).randbytes(size // ratio).hex().encode()
    salt_paragraph = b"<w:p><w:r><w:t>" + salt + b"</w:t></w:r></w:p>"
    spaces = max(size - len(start) - len(paragraphs) - len(salt_paragraph) - len(end), 0)
    # In runs of under 1 MB: libxml2 refuses a text node over 10 MB by itself.
    run = b" " * (1024 * 1024 - 6) + b"<w:p/>"
    padding = run * (spaces // len(run)) + b" " * (spaces % len(run))
    return make_docx_with_document_xml(start + salt_paragraph + paragraphs + padding + end)


def make_pdf_with_content_stream(content: bytes) -> bytes:
    """A one-page PDF whose page content stream is `content`, FlateDecode-compressed: a
    megabyte of spaces compresses to about a kilobyte."""
    import zlib

    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def make_exploding_pdf(decoded_bytes: int) -> bytes:
    """A PDF whose one content stream is a line of text followed by decoded_bytes of spaces:
    40 MB decoded is a 40 KB file."""
    text = b"BT /F1 12 Tf 72 700 Td (The Falcon reserve is 7,310 units.) Tj ET\n"
    return make_pdf_with_content_stream(text + b" " * decoded_bytes)


def make_short_lines_text(size: int) -> bytes:
    """size bytes of two-letter lines: the text parser keeps one string object (~60 bytes)
    per 3-byte line, so 50 MB needs more than 1 GB of memory."""
    return b"ab\n" * (size // 3)


def make_slow_markdown(size: int) -> bytes:
    """A Markdown list of size/4 one-letter items: markdown-it parses it at about 0.5 MB/s."""
    return b"# Slow list\n\n" + b"- a\n" * (size // 4)
