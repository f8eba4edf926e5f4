"""Turn an uploaded file into plain-text sections (PDF, DOCX, HTML, Markdown, plain text).

Every failure a user can cause with the file itself raises ParseError (or UnsupportedType)
with a message written for the admin who uploaded it; nothing else escapes parse_document
for bad input.

Each format lives in its own module, imported on first use: the web process imports this
package for kind_from_extension and should not pay for pypdf, pdfplumber, python-docx,
bs4, markdown-it or charset-normalizer.
"""

from __future__ import annotations

import importlib
from pathlib import PurePath

from knowledge.ingestion.parsers.base import (
    DEFAULT_MAX_UNPACKED_BYTES,
    DEFAULT_MAX_XML_BYTES,
    HEADING_SEPARATOR,
    TITLE_MAX_CHARS,
    ParsedDocument,
    ParseError,
    Section,
    UnsupportedType,
    clean_text,
)

__all__ = [
    "DEFAULT_MAX_UNPACKED_BYTES",
    "DEFAULT_MAX_XML_BYTES",
    "HEADING_SEPARATOR",
    "SUPPORTED_EXTENSIONS",
    "TITLE_MAX_CHARS",
    "ParseError",
    "ParsedDocument",
    "Section",
    "UnsupportedType",
    "clean_text",
    "detect_kind",
    "import_every_format",
    "kind_from_extension",
    "parse_document",
    "supported_types_text",
]

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

# Each module has parse(data: bytes, *, max_unpacked_bytes: int, max_xml_bytes: int)
# -> ParsedDocument; the limits apply to the formats that unpack (DOCX).
_FORMAT_MODULES: dict[str, str] = {
    "pdf": "knowledge.ingestion.parsers.pdf",
    "docx": "knowledge.ingestion.parsers.docx",
    "html": "knowledge.ingestion.parsers.html",
    "markdown": "knowledge.ingestion.parsers.markdown",
    "text": "knowledge.ingestion.parsers.text",
}


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


def import_every_format() -> None:
    """Load every format's module and library (for a parse child waiting for its file)."""
    for module in _FORMAT_MODULES.values():
        importlib.import_module(module)
    importlib.import_module("bs4")  # Markdown with raw HTML in it


def parse_document(
    *,
    data: bytes,
    filename: str,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    max_xml_bytes: int = DEFAULT_MAX_XML_BYTES,
) -> ParsedDocument:
    """Parse a whole file. Raises UnsupportedType or ParseError; never returns no text.

    Runs in the calling process with no memory or time bound: the ingestion pipeline calls
    it through knowledge.ingestion.sandbox instead.
    """
    kind_from_extension(filename)
    if not data or data.isspace():
        raise ParseError("The file is empty.")
    kind = detect_kind(filename, data[:1024])
    parser = importlib.import_module(_FORMAT_MODULES[kind])
    parsed = parser.parse(data, max_unpacked_bytes=max_unpacked_bytes, max_xml_bytes=max_xml_bytes)
    sections = [section for section in parsed.sections if section.text]
    if not sections:
        raise ParseError("The document contains no text.")
    return ParsedDocument(sections=sections, title=parsed.title)
