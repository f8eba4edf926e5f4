"""Turn an uploaded file into plain-text sections (PDF, DOCX, HTML, Markdown, plain text).

Every failure a user can cause with the file itself raises ParseError (or UnsupportedType)
with a message written for the admin who uploaded it; nothing else escapes parse_document
for bad input.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath

# pypdf and python-docx are imported where used: the web process imports this module for
# detect_kind and should not pay for them.
import charset_normalizer
from bs4 import BeautifulSoup, Comment, NavigableString, Tag
from markdown_it import MarkdownIt
from markdown_it.token import Token

DEFAULT_MAX_UNPACKED_BYTES = 200 * 1024 * 1024
TITLE_MAX_CHARS = 255
HEADING_SEPARATOR = " > "

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
}

# A DOCX member that inflates more than this (and is large) is treated as a zip bomb: real
# Word XML compresses about 5-20:1.
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECK_MIN_BYTES = 1024 * 1024
MAX_ZIP_MEMBERS = 10_000

# Text that is more than this share of control characters is binary data, not text.
MAX_CONTROL_CHAR_RATIO = 0.02


@dataclass(frozen=True)
class Section:
    text: str
    heading: str = ""
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    sections: list[Section]
    title: str | None

    @property
    def text(self) -> str:
        return "\n\n".join(section.text for section in self.sections)


class ParseError(Exception):
    """The file cannot be turned into text; str() is the reason, fit to show an admin."""


class UnsupportedType(Exception):
    """The file type is not one we parse; str() names the supported types."""


def supported_types_text() -> str:
    kinds: dict[str, list[str]] = {}
    for extension, kind in SUPPORTED_EXTENSIONS.items():
        kinds.setdefault(kind, []).append(extension)
    labels = {"pdf": "PDF", "docx": "Word", "html": "HTML", "markdown": "Markdown", "text": "text"}
    return ", ".join(f"{labels[kind]} ({', '.join(exts)})" for kind, exts in kinds.items())


def detect_kind(filename: str, head: bytes) -> str:
    """The parser kind for a file, from its extension, checked against its first bytes.

    Raises UnsupportedType for an extension we do not parse, and ParseError when the file
    is empty or its first bytes contradict the extension.
    """
    kind = kind_from_extension(filename)
    if not head:
        raise ParseError("The file is empty.")
    if kind == "pdf" and b"%PDF-" not in head[:1024]:
        raise ParseError("The PDF is corrupt: the file does not start with a PDF header.")
    if kind == "docx" and not head.startswith(b"PK"):
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise ParseError(
                "The file is an old-style Word .doc renamed to .docx; save it as .docx in Word."
            )
        raise ParseError("The DOCX file is not a valid Word document (not a zip archive).")
    return kind


def kind_from_extension(filename: str) -> str:
    extension = PurePath(filename or "").suffix.lower()
    kind = SUPPORTED_EXTENSIONS.get(extension)
    if kind is None:
        shown = f'"{extension}" files are' if extension else "Files without an extension are"
        raise UnsupportedType(f"{shown} not supported. Supported types: {supported_types_text()}.")
    return kind


def parse_document(
    *, data: bytes, filename: str, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
) -> ParsedDocument:
    """Parse a whole file. Raises UnsupportedType or ParseError; never returns no text."""
    kind_from_extension(filename)
    if not data or data.isspace():
        raise ParseError("The file is empty.")
    kind = detect_kind(filename, data[:1024])
    if kind == "pdf":
        parsed = _parse_pdf(data)
    elif kind == "docx":
        parsed = _parse_docx(data, max_unpacked_bytes=max_unpacked_bytes)
    elif kind == "html":
        parsed = _parse_html(data)
    elif kind == "markdown":
        parsed = _parse_markdown(_decode_text(data))
    else:
        parsed = _parse_text(_decode_text(data))
    sections = [section for section in parsed.sections if section.text]
    if not sections:
        raise ParseError("The document contains no text.")
    return ParsedDocument(sections=sections, title=parsed.title)


# --- text clean-up -----------------------------------------------------------------------

_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_NEWLINES = re.compile(r"\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_text(text: str, *, keep_spaces: bool = False) -> str:
    """Unify line ends, drop invisible and control characters, collapse runs of spaces
    (unless keep_spaces, for code) and blank lines; paragraphs end up separated by "\\n\\n"."""
    text = _NEWLINES.sub("\n", text).translate(_INVISIBLE)
    text = _CONTROL.sub("", text)
    if keep_spaces:
        lines = [line.rstrip() for line in text.split("\n")]
    else:
        lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


def _clean_line(text: str) -> str:
    return " ".join(clean_text(text).split())


def _clean_title(text: str | None) -> str | None:
    title = _clean_line(text or "")[:TITLE_MAX_CHARS].strip()
    return title or None


class _SectionBuilder:
    """Collects blocks under the current heading path; a new heading starts a new section."""

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []
        self._blocks: list[str] = []
        self._sections: list[Section] = []
        self.headings: list[str] = []

    def heading(self, *, level: int, text: str) -> None:
        text = _clean_line(text)
        if not text:
            return
        self._flush()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, text))
        self.headings.append(text)

    def paragraph(self, text: str, *, keep_spaces: bool = False) -> None:
        text = clean_text(text, keep_spaces=keep_spaces)
        if text:
            self._blocks.append(text)

    def table(self, rows: list[list[str]]) -> None:
        lines = []
        for row in rows:
            cells = [_clean_line(cell) for cell in row]
            if any(cells):
                lines.append(" | ".join(cells))
        if lines:
            self._blocks.append("\n".join(lines))

    def sections(self) -> list[Section]:
        self._flush()
        if not self._sections and self.headings:
            # A document of headings only still has text worth indexing.
            return [Section(text="\n\n".join(self.headings))]
        return self._sections

    def _flush(self) -> None:
        if self._blocks:
            heading = HEADING_SEPARATOR.join(text for _, text in self._path)
            self._sections.append(Section(text="\n\n".join(self._blocks), heading=heading))
            self._blocks = []


# --- PDF ---------------------------------------------------------------------------------


def _parse_pdf(data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, LimitReachedError

    # pypdf raises a wide range of exception types on malformed input (KeyError,
    # AttributeError, struct errors, ...); any of them means the file is damaged.
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        _unlock_pdf(reader)
        pages = [page.extract_text() or "" for page in reader.pages]
        headings = _pdf_page_headings(reader, page_count=len(pages))
        title = _pdf_title(reader)
    except ParseError:
        raise
    except DependencyError as exc:
        raise ParseError(
            "The PDF uses an encryption method this server cannot decrypt; "
            "upload an unencrypted copy."
        ) from exc
    except LimitReachedError as exc:
        raise ParseError(
            "The PDF contains a stream that expands beyond the safety limit; refusing to read it."
        ) from exc
    except Exception as exc:
        raise ParseError(f"The PDF is damaged and could not be read ({_describe(exc)}).") from exc
    if not pages:
        raise ParseError("The PDF has no pages.")
    sections = [
        Section(text=clean_text(text), heading=heading, page=number)
        for number, (text, heading) in enumerate(zip(pages, headings, strict=True), start=1)
    ]
    if not any(section.text for section in sections):
        raise ParseError(
            "The PDF has no extractable text (it looks scanned); "
            "scanned documents need OCR, which is not supported."
        )
    return ParsedDocument(sections=sections, title=title)


def _unlock_pdf(reader) -> None:
    from pypdf import PasswordType

    if not reader.is_encrypted:
        return
    # Many "encrypted" PDFs only restrict printing or copying and open with an empty password.
    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise ParseError("The PDF is encrypted; upload an unencrypted copy.")


def _pdf_title(reader) -> str | None:
    metadata = reader.metadata
    title = _clean_title(str(metadata.title)) if metadata and metadata.title else None
    if title:
        return title
    first = next(_pdf_outline_entries(reader), None)
    return _clean_title(first[1][-1]) if first else None


def _pdf_outline_entries(reader) -> Iterator[tuple[int, list[str]]]:
    """(0-based page index, heading path) for each outline entry, in outline order."""

    def walk(items, parents: list[str]) -> Iterator[tuple[int, list[str]]]:
        last_path = parents
        for item in items:
            if isinstance(item, list):
                yield from walk(item, last_path)
                continue
            title = _clean_line(str(item.title or ""))
            if not title:
                continue
            last_path = [*parents, title]
            page_index = reader.get_destination_page_number(item)
            if page_index is not None and page_index >= 0:
                yield page_index, last_path

    try:
        entries = list(walk(reader.outline, []))
    except Exception:
        entries = []  # A broken outline is not worth failing the document over.
    yield from entries


def _pdf_page_headings(reader, *, page_count: int) -> list[str]:
    """For each page: the first outline heading on it, else the last one before it."""
    on_page: dict[int, list[list[str]]] = {}
    for page_index, path in _pdf_outline_entries(reader):
        on_page.setdefault(page_index, []).append(path)
    headings, current = [], []
    for index in range(page_count):
        paths = on_page.get(index)
        headings.append(HEADING_SEPARATOR.join(paths[0] if paths else current))
        current = paths[-1] if paths else current
    return headings


# --- DOCX --------------------------------------------------------------------------------


def _parse_docx(data: bytes, *, max_unpacked_bytes: int) -> ParsedDocument:
    _check_zip(data, max_unpacked_bytes=max_unpacked_bytes)

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    # python-docx reports malformed packages and XML through many exception types.
    try:
        document = docx.Document(io.BytesIO(data))
        builder = _SectionBuilder()
        first_title = _walk_docx(document, builder)
        core_title = document.core_properties.title
    except PackageNotFoundError as exc:
        raise ParseError(
            "The DOCX file is not a valid Word document (the zip has no Word document in it)."
        ) from exc
    except Exception as exc:
        raise ParseError(
            f"The DOCX file is damaged and could not be read ({_describe(exc)})."
        ) from exc
    title = _clean_title(core_title) or _clean_title(first_title)
    return ParsedDocument(sections=builder.sections(), title=title)


def _check_zip(data: bytes, *, max_unpacked_bytes: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ParseError("The DOCX file is not a valid Word document (not a zip archive).") from exc
    if not any(member.filename == "[Content_Types].xml" for member in members):
        raise ParseError(
            "The DOCX file is not a valid Word document (the zip archive holds no Word content)."
        )
    if len(members) > MAX_ZIP_MEMBERS:
        raise ParseError(
            f"The DOCX contains {len(members)} files; refusing to open it (possible zip bomb)."
        )
    total = sum(member.file_size for member in members)
    if total > max_unpacked_bytes:
        raise ParseError(
            f"The DOCX expands to more than {_megabytes(max_unpacked_bytes)} when unpacked; "
            "refusing to open it (possible zip bomb)."
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise ParseError(
                f"The DOCX member {member.filename!r} is compressed {ratio:.0f}:1, far beyond "
                "what a Word document compresses; refusing to open it (possible zip bomb)."
            )


def _walk_docx(document, builder: _SectionBuilder) -> str | None:
    """Feed the body's paragraphs and tables, in document order; return a title candidate."""
    from docx.table import Table

    title = None
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            builder.table(_docx_table_rows(block))
            continue
        style_name = _docx_style_name(block)
        text = block.text
        if style_name == "title":
            title = title or text
            builder.heading(level=0, text=text)
        elif level := _docx_heading_level(style_name):
            title = title or text
            builder.heading(level=level, text=text)
        else:
            builder.paragraph(text)
    return title


def _docx_style_name(paragraph) -> str:
    try:
        style = paragraph.style
    except Exception:
        return ""
    return (style.name or "").strip().lower() if style is not None else ""


def _docx_heading_level(style_name: str) -> int | None:
    match = re.fullmatch(r"heading ([1-9])", style_name)
    return int(match.group(1)) if match else None


def _docx_table_rows(table) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            # A horizontally merged cell is returned once per grid column it spans.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text)
        rows.append(cells)
    return rows


# --- HTML --------------------------------------------------------------------------------

_HTML_DROP = {
    "nav",
    "script",
    "style",
    "noscript",
    "template",
    "head",
    "svg",
    "math",
    "iframe",
    "object",
    "embed",
    "canvas",
    "button",
    "select",
    "textarea",
}
_HTML_BLOCKS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "html",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "section",
    "summary",
    "ul",
}
_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_WHITESPACE = re.compile(r"\s+")
_END_OF_BLOCK = object()


def _parse_html(data: bytes) -> ParsedDocument:
    _reject_binary(data)
    soup = BeautifulSoup(data, "html.parser")
    title_tag = soup.find("title")
    title = _clean_title(title_tag.get_text(" ")) if title_tag else None
    builder = _SectionBuilder()
    first_h1 = _walk_html(soup, builder)
    return ParsedDocument(sections=builder.sections(), title=title or _clean_title(first_h1))


def _walk_html(soup: BeautifulSoup, builder: _SectionBuilder) -> str | None:
    """Walk the tree iteratively (deeply nested markup must not hit the recursion limit)."""
    first_h1 = None
    inline: list[str] = []

    def flush() -> None:
        builder.paragraph("".join(inline))
        inline.clear()

    stack: list[object] = list(reversed(soup.contents))
    while stack:
        node = stack.pop()
        if node is _END_OF_BLOCK:
            flush()
        elif isinstance(node, NavigableString):
            if type(node) is NavigableString:  # not a Comment, CData, Doctype, ...
                inline.append(_WHITESPACE.sub(" ", str(node)))
        elif isinstance(node, Tag):
            name = node.name.lower()
            if name in _HTML_DROP:
                continue
            if name in _HTML_HEADINGS:
                flush()
                text = node.get_text(" ")
                if name == "h1" and first_h1 is None:
                    first_h1 = text
                builder.heading(level=_HTML_HEADINGS[name], text=text)
            elif name == "table":
                flush()
                builder.table(_html_table_rows(node))
            elif name == "pre":
                flush()
                builder.paragraph(node.get_text(), keep_spaces=True)
            elif name == "br":
                inline.append("\n")
            elif name in _HTML_BLOCKS:
                flush()
                stack.append(_END_OF_BLOCK)
                stack.extend(reversed(node.contents))
            else:
                stack.extend(reversed(node.contents))
    flush()
    return first_h1


def _html_table_rows(table: Tag) -> list[list[str]]:
    rows = []
    caption = table.find("caption")
    if caption is not None and caption.find_parent("table") is table:
        rows.append([caption.get_text(" ")])
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue  # belongs to a nested table, flattened into its cell's text
        cells = row.find_all(["td", "th"], recursive=False)
        rows.append([_html_text(cell) for cell in cells])
    return rows


def _html_text(tag: Tag) -> str:
    for dropped in tag.find_all(_HTML_DROP):
        dropped.decompose()
    for comment in tag.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    return tag.get_text(" ")


# --- Markdown ----------------------------------------------------------------------------


def _parse_markdown(text: str) -> ParsedDocument:
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    builder = _SectionBuilder()
    title = None
    row: list[str] | None = None
    rows: list[list[str]] = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            level = int(token.tag[1])
            heading = _markdown_inline_text(tokens[index + 1])
            if level == 1 and title is None:
                title = heading
            builder.heading(level=level, text=heading)
        elif token.type == "inline":
            if row is not None:
                row.append(_markdown_inline_text(token))
            elif tokens[index - 1].type == "paragraph_open":
                builder.paragraph(_markdown_inline_text(token))
        elif token.type in ("fence", "code_block"):
            builder.paragraph(token.content, keep_spaces=True)
        elif token.type == "html_block":
            builder.paragraph(_html_fragment_text(token.content))
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            rows.append(row or [])
            row = None
        elif token.type == "table_close":
            builder.table(rows)
            rows = []
    return ParsedDocument(sections=builder.sections(), title=_clean_title(title))


def _markdown_inline_text(token: Token) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return "".join(parts)


def _html_fragment_text(fragment: str) -> str:
    return _html_text(BeautifulSoup(fragment, "html.parser"))


# --- plain text --------------------------------------------------------------------------

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


_PREFERRED_LEGACY_ENCODINGS = ("cp1252", "latin_1", "iso8859_15")


_SETEXT_UNDERLINE = re.compile(r"^(=+|-+)\s*$")
_SETEXT_MAX_HEADING_CHARS = 120


def _parse_text(text: str) -> ParsedDocument:
    """Paragraphs under the headings marked the way plain text marks them: a short line
    underlined with === (level 1) or --- (level 2)."""
    lines = clean_text(text).split("\n")
    builder = _SectionBuilder()
    title = None
    paragraph: list[str] = []
    for index, line in enumerate(lines):
        if _is_setext_heading(lines, index):
            builder.paragraph("\n".join(paragraph))
            paragraph = []
            level = 1 if lines[index + 1].startswith("=") else 2
            title = title or (line if level == 1 else None)
            builder.heading(level=level, text=line)
        elif index > 0 and _is_setext_heading(lines, index - 1):
            continue  # the underline
        elif line:
            paragraph.append(line)
        else:
            builder.paragraph("\n".join(paragraph))
            paragraph = []
    builder.paragraph("\n".join(paragraph))
    return ParsedDocument(sections=builder.sections(), title=_clean_title(title))


def _is_setext_heading(lines: list[str], index: int) -> bool:
    line = lines[index]
    return (
        0 < len(line) <= _SETEXT_MAX_HEADING_CHARS
        and index + 1 < len(lines)
        and len(lines[index + 1]) >= 3
        and _SETEXT_UNDERLINE.match(lines[index + 1]) is not None
        and (index == 0 or not lines[index - 1])
    )


def _decode_text(data: bytes) -> str:
    """Decode by BOM, else strict UTF-8, else charset-normalizer's best guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _checked_text(data.decode(encoding))
            except UnicodeDecodeError as exc:
                raise ParseError(
                    f"The text could not be decoded: it starts with a {encoding} byte order "
                    f"mark but is not valid {encoding}."
                ) from exc
    _reject_binary(data)
    try:
        return _checked_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    return _checked_text(_guess_legacy_encoding(data))


def _guess_legacy_encoding(data: bytes) -> str:
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError(
            "The text could not be decoded: it is not UTF-8 and no other encoding fits."
        )
    # charset-normalizer cannot tell the Latin code pages apart on accented Western text and
    # breaks the tie alphabetically (cp1250); Windows-1252 is by far the likelier source.
    for match in matches:
        if (
            match.encoding in _PREFERRED_LEGACY_ENCODINGS
            and match.chaos <= best.chaos + 0.01
            and match.coherence >= best.coherence - 0.01
        ):
            return str(match)
    return str(best)


def _reject_binary(data: bytes) -> None:
    if data.startswith(tuple(bom for bom, _ in _BOMS)):
        return  # UTF-16 and UTF-32 text is full of NUL bytes.
    if b"\x00" in data[:65536]:
        raise ParseError("The file does not look like text (it contains binary data).")


def _checked_text(text: str) -> str:
    sample = text[:65536]
    control = sum(
        1 for char in sample if unicodedata.category(char) == "Cc" and char not in "\t\n\r\x0c"
    )
    if "\x00" in sample or control > MAX_CONTROL_CHAR_RATIO * max(len(sample), 1):
        raise ParseError("The file does not look like text (it contains binary data).")
    return text


# --- helpers -----------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"
