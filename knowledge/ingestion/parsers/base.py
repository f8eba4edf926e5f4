"""What every format parser shares: the result types, the errors and the text clean-up."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MAX_UNPACKED_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_XML_BYTES = 20 * 1024 * 1024
TITLE_MAX_CHARS = 255
HEADING_SEPARATOR = " > "


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

    def table(self, rows: Sequence[Sequence[str]], *, header_rows: int = 1) -> None:
        """rows on the table's grid: a cell spanning several columns or rows is repeated in
        each slot it covers, an empty slot is "". See table_text for what becomes of them."""
        title, text = table_text(rows, header_rows=header_rows)
        if title:
            self._blocks.append(title)
        if text:
            self._blocks.append(text)

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


# --- tables ----------------------------------------------------------------------------

TABLE_CELL_SEPARATOR = " | "
# The answering side reads a table line with line.strip().strip("|").split("|"), which
# drops an empty first cell and shifts every column after it one place to the left: a
# figure would sit under its neighbour's column name. An empty first cell is written as
# this instead (empty cells further along keep their place as they are).
EMPTY_FIRST_CELL = "-"


def table_text(rows: Sequence[Sequence[str]], *, header_rows: int = 1) -> tuple[str, str]:
    """(title, table): a table as its header line and one line per row, cells separated by
    " | ", every cell on one line; the title is a first row that is one cell across the
    whole table (else "").

    The first header_rows rows (after the title) are one header: each column's name is its
    texts in those rows, top to bottom, a text repeated by a span said once ("Salary" over
    "Min" reads "Salary Min"). Rows and columns with no text are dropped; a row's empty
    trailing cells are left off, its other empty cells stay so its figures keep their
    columns.
    """
    grid = [[_table_cell(cell) for cell in row] for row in rows]
    grid = [row for row in grid if any(row)]
    if not grid:
        return "", ""
    title = ""
    width = max(len(row) for row in grid)
    if len(grid) > 1 and width > 1 and len(set(grid[0])) == 1:
        title = grid.pop(0)[0]
        header_rows = max(header_rows - 1, 1)
    header_rows = min(max(header_rows, 1), len(grid))
    header = [_column_name(grid[:header_rows], column) for column in range(width)]
    grid = [header, *grid[header_rows:]]
    kept = [c for c in range(width) if any(c < len(row) and row[c] for row in grid)]
    lines = []
    for row in grid:
        cells = [row[c] if c < len(row) else "" for c in kept]
        while cells and not cells[-1]:
            cells.pop()
        if cells and not cells[0]:
            cells[0] = EMPTY_FIRST_CELL
        lines.append(TABLE_CELL_SEPARATOR.join(cells))
    return title, "\n".join(lines)


def _table_cell(text: str) -> str:
    # A "|" inside a cell would read as a column boundary.
    return _clean_line(text or "").replace("|", "/")


def _column_name(header: list[list[str]], column: int) -> str:
    parts: list[str] = []
    for row in header:
        text = row[column] if column < len(row) else ""
        if text and (not parts or parts[-1] != text):
            parts.append(text)
    return " ".join(parts)


# --- error messages ----------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"
