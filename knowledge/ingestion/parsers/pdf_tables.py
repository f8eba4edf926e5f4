"""A PDF page as its text and tables, in reading order, from pdfplumber's characters, words
and ruling lines.

Two kinds of table are found:

- ruled: a grid drawn with lines or rectangles. pdfplumber's "lines" strategy finds its
  cells; a cell that spans columns or rows is repeated in each slot it covers.
- borderless: blocks of lines whose words stand in columns, with a gutter of white space
  that runs down every line of the block. A block is a table when at least two of its
  lines have a gap of an em or more (LINE_GAP_EM) between two words and its columns are
  not full lines of prose side by side (a page set in columns). Rows are the lines, except
  that a line with no text in its first column, a line overlapping the one above (a cell
  centred against a wrapped neighbour), or a line closer to the one above than rows are
  to each other joins the row above. Where horizontal rules are drawn between rows, they
  alone decide.

pdfplumber's "text" strategy was measured and not used: on a page with prose around a
table it cut words in half ("landin | g gear") and took the prose in as rows.

Text outside tables keeps the order in which the page draws it (pdfplumber's text flow,
what pypdf reads too), and each table takes the place of its first character in that
order, so a table stays between the paragraphs it was printed between.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

from pdfplumber.page import Page
from pdfplumber.utils import chars_to_textmap

# Gaps and distances in ems of the text's own font size.
LINE_GAP_EM = 1.0  # a line with a gap this wide between two words may be a table row
COLUMN_GAP_EM = 0.4  # a gutter this wide, down every line of a block, separates columns
MAX_ROW_GAP_EM = 2.5  # lines further apart than this are not one table
# Columns whose lines are this full and hold this many words (medians) are prose set in
# columns, not a table.
PROSE_FILL = 0.8
PROSE_WORDS = 5
MIN_TABLE_LINES = 2

_RULED = {"vertical_strategy": "lines", "horizontal_strategy": "lines"}
_WORD_SETTINGS = {"x_tolerance": 3, "y_tolerance": 3, "extra_attrs": ["fontname", "size"]}


@dataclass(frozen=True)
class PageTable:
    rows: list[list[str]]  # on the table's grid; the first header_rows rows are the header
    column_starts: tuple[float, ...]
    header_styled: bool  # the first row is set in a bold face and the next is not
    header_rows: int = 1


def page_blocks(page: Page) -> list[str | PageTable]:
    """The page's text runs (as pdfplumber writes them) and tables, in reading order."""
    chars = page.chars
    if not chars:
        return []
    words = page.extract_words(return_chars=True, **_WORD_SETTINGS)
    found: list[tuple[set[int], PageTable]] = []  # (ids of its characters, table)
    taken: set[int] = set()
    for bbox, table in _ruled_tables(page, words):
        members = {id(c) for c in chars if _centre_in(c, bbox)}
        found.append((members, table))
        taken |= members
    free_words = [w for w in words if not any(id(c) in taken for c in w["chars"])]
    for region_words, table in _borderless_tables(page, free_words):
        found.append(({id(c) for w in region_words for c in w["chars"]}, table))

    blocks: list[str | PageTable] = []
    run: list[dict] = []
    emitted: set[int] = set()

    def flush() -> None:
        if run:
            # What page.extract_text(use_text_flow=True) does, for these characters.
            text = chars_to_textmap(run, x_tolerance=3, y_tolerance=3, use_text_flow=True).as_string
            if text.strip():
                blocks.append(text)
            run.clear()

    owners = {member: index for index, (members, _) in enumerate(found) for member in members}
    for char in chars:
        owner = owners.get(id(char))
        if owner is None:
            run.append(char)
        elif owner not in emitted:
            flush()
            emitted.add(owner)
            blocks.append(found[owner][1])
    flush()
    return blocks


def _centre_in(obj: dict, bbox: tuple[float, float, float, float]) -> bool:
    x = (obj["x0"] + obj["x1"]) / 2
    y = (obj["top"] + obj["bottom"]) / 2
    return bbox[0] <= x <= bbox[2] and bbox[1] <= y <= bbox[3]


def _is_bold(fontname: str) -> bool:
    name = fontname.lower()
    return "bold" in name or "black" in name or "heavy" in name


def _bold_share(words: list[dict]) -> float:
    letters = [len(w["text"]) for w in words]
    bold = [len(w["text"]) for w in words if _is_bold(w.get("fontname", ""))]
    return sum(bold) / sum(letters) if letters else 0.0


def _header_styled(first: list[dict], second: list[dict]) -> bool:
    return bool(first and second) and _bold_share(first) > 0.5 >= _bold_share(second)


# --- ruled tables ------------------------------------------------------------------------


def _ruled_tables(page: Page, words: list[dict]):
    """(bbox, PageTable) for each grid of at least two rows and two columns with text."""
    for table in page.find_tables(_RULED):
        texts = table.extract()
        grid_rows = table.rows
        if len(grid_rows) < 2 or max(len(row.cells) for row in grid_rows) < 2:
            continue
        rows, first_row_spans = _fill_spans(table, texts)
        if sum(1 for row in rows if sum(1 for cell in row if cell.strip()) >= 2) < 2:
            continue
        # A first row with a cell over several columns names them with the row below it.
        header_rows = 2 if first_row_spans and len(rows) > 2 else 1
        first, second = ([w for w in words if _centre_in(w, row.bbox)] for row in grid_rows[:2])
        styled = _header_styled(first, second)
        if len(rows) == 2 and (body := _split_unruled_body(page, table, words)):
            rows = rows[:1] + body
        xs = tuple(sorted({cell[0] for row in grid_rows for cell in row.cells if cell}))
        yield (
            table.bbox,
            PageTable(rows=rows, column_starts=xs, header_styled=styled, header_rows=header_rows),
        )


def _fill_spans(table, texts: list[list[str | None]]) -> tuple[list[list[str]], bool]:
    """pdfplumber leaves None in the slots a merged cell covers: give them its text. Also
    says whether a cell of the first row spans columns."""
    cells = {}
    for row, row_texts in zip(table.rows, texts, strict=True):
        for bbox, text in zip(row.cells, row_texts, strict=True):
            if bbox is not None:
                cells[bbox] = text or ""
    xs = sorted({bbox[0] for bbox in cells} | {table.bbox[2]})
    rows = []
    first_row_spans = False
    for index, (row, row_texts) in enumerate(zip(table.rows, texts, strict=True)):
        filled = []
        for column, text in enumerate(row_texts):
            if text is not None or row.cells[column] is not None:
                filled.append(text or "")
                continue
            x = (xs[column] + xs[column + 1]) / 2 if column + 1 < len(xs) else xs[column]
            y = (row.bbox[1] + row.bbox[3]) / 2
            cover = next((b for b in cells if b[0] <= x <= b[2] and b[1] <= y <= b[3]), None)
            filled.append(cells[cover] if cover else "")
            first_row_spans |= index == 0 and cover is not None
        rows.append(filled)
    return rows, first_row_spans


def _split_unruled_body(page: Page, table, words: list[dict]) -> list[list[str]] | None:
    """A grid with a rule under its header and none between its rows reads as one tall
    body row: read that row's lines as rows the way a borderless table's are. None when
    they make one row."""
    body = table.rows[1]
    inside = [w for w in words if _centre_in(w, body.bbox)]
    if not inside:
        return None
    xs = sorted({cell[0] for row in table.rows for cell in row.cells if cell})
    lines = [_make_line(line) for line in _lines(inside)]
    line_cells = [_cells_of(line, xs[1:]) for line in lines]
    rows = _group_rows(page, lines, line_cells, len(xs))
    if len(rows) < 2:
        return None
    return [[_cell_text(cell) for cell in row] for row in rows]


def _cell_text(words: list[dict]) -> str:
    return " ".join(w["text"] for w in sorted(words, key=lambda w: (w["top"], w["x0"])))


# --- borderless tables -------------------------------------------------------------------


@dataclass
class _Line:
    words: list[dict]
    top: float
    bottom: float
    size: float
    gaps: list[tuple[float, float]]  # (from x, to x) of each gap of LINE_GAP_EM or more

    @property
    def is_row_like(self) -> bool:
        return bool(self.gaps)


def _lines(words: list[dict]) -> list[list[dict]]:
    """Words grouped into lines by their top, each line left to right, lines top down."""
    lines: list[list[dict]] = []
    for word in sorted(words, key=lambda w: (w["top"], w["x0"])):
        if lines and word["top"] - lines[-1][0]["top"] <= 0.3 * word["size"]:
            lines[-1].append(word)
        else:
            lines.append([word])
    return [sorted(line, key=lambda w: w["x0"]) for line in lines]


def _make_line(words: list[dict]) -> _Line:
    size = statistics.median(w["size"] for w in words)
    gaps = [
        (a["x1"], b["x0"])
        for a, b in itertools.pairwise(words)
        if b["x0"] - a["x1"] >= LINE_GAP_EM * size
    ]
    top = min(w["top"] for w in words)
    bottom = max(w["bottom"] for w in words)
    return _Line(words=words, top=top, bottom=bottom, size=size, gaps=gaps)


def _borderless_tables(page: Page, words: list[dict]):
    """(words, PageTable) for each block of lines whose words stand in columns."""
    lines = [_make_line(line) for line in _lines([w for w in words if w.get("upright", True)])]
    region: list[_Line] = []
    pending: list[_Line] = []
    for line in lines:
        if region:
            last = (pending or region)[-1]
            too_far = line.top - last.bottom > MAX_ROW_GAP_EM * line.size
            if not too_far and _separators([*region, *pending, line]):
                if line.is_row_like:
                    region.extend([*pending, line])
                    pending = []
                else:
                    pending.append(line)
                continue
            if found := _close(page, region, pending):
                yield found
            region, pending = [], []
        if line.is_row_like:
            region = [line]
    if found := _close(page, region, pending):
        yield found


def _separators(lines: list[_Line]) -> list[tuple[float, float]]:
    """Gutters of COLUMN_GAP_EM or more that run down every line and that a gap of a
    row-like line lies across (so that a gutter is where a line shows a column break)."""
    size = statistics.median(line.size for line in lines)
    spans = sorted((w["x0"], w["x1"]) for line in lines for w in line.words)
    gutters = []
    right = spans[0][1]
    for x0, x1 in spans[1:]:
        if x0 - right >= COLUMN_GAP_EM * size:
            gutters.append((right, x0))
        right = max(right, x1)
    return [
        (left, right)
        for left, right in gutters
        if any(a <= right and b >= left for line in lines for a, b in line.gaps)
    ]


def _close(page: Page, region: list[_Line], pending: list[_Line]):
    """The region as a table, with the lines just under it that continue its last row
    (as close as lines within a row and inside its columns); None if it is none."""
    if sum(1 for line in region if line.is_row_like) < MIN_TABLE_LINES:
        return None
    for line in pending:
        last = region[-1]
        if line.top - last.bottom > 0.3 * line.size or not _separators([*region, line]):
            break
        region.append(line)
    separators = _separators(region)
    if not separators:
        return None
    cuts = [(a + b) / 2 for a, b in separators]
    width = len(cuts) + 1
    line_cells = [_cells_of(line, cuts) for line in region]
    if _prose_in_columns(region, line_cells, separators):
        return None
    rows = _group_rows(page, region, line_cells, width)
    table_rows = [[_cell_text(cell) for cell in row] for row in rows]
    first = [w for cell in rows[0] for w in cell]
    second = [w for cell in rows[1] for w in cell] if len(rows) > 1 else []
    starts = (min(w["x0"] for line in region for w in line.words), *(b for _, b in separators))
    table = PageTable(
        rows=table_rows, column_starts=starts, header_styled=_header_styled(first, second)
    )
    return [w for line in region for w in line.words], table


def _cells_of(line: _Line, cuts: list[float]) -> list[list[dict]]:
    cells: list[list[dict]] = [[] for _ in range(len(cuts) + 1)]
    for word in line.words:
        centre = (word["x0"] + word["x1"]) / 2
        cells[sum(1 for cut in cuts if centre > cut)].append(word)
    return cells


def _prose_in_columns(region, line_cells, separators) -> bool:
    """Columns of full lines of several words, side by side: a page set in columns."""
    if len(region) < 4:
        return False
    edges = [min(w["x0"] for line in region for w in line.words)]
    edges += [x for gutter in separators for x in gutter]
    edges.append(max(w["x1"] for line in region for w in line.words))
    for column in range(len(separators) + 1):
        left, right = edges[2 * column], edges[2 * column + 1]
        filled = [cells[column] for cells in line_cells if cells[column]]
        fills = [
            (max(w["x1"] for w in words) - min(w["x0"] for w in words)) / max(right - left, 1.0)
            for words in filled
        ]
        if not fills or statistics.median(fills) < PROSE_FILL:
            return False
        if statistics.median(len(words) for words in filled) < PROSE_WORDS:
            return False
    return True


def _group_rows(page: Page, region: list[_Line], line_cells, width: int):
    size = statistics.median(line.size for line in region)
    rules = _rules_between(page, region)
    gaps = [b.top - a.bottom for a, b in itertools.pairwise(region)]
    smallest = min(gaps, default=0.0)
    spaced = bool(gaps) and max(gaps) - smallest > 0.5 * size  # rows further apart than lines
    rows: list[list[list[dict]]] = []
    bottom = None
    for index, (line, cells) in enumerate(zip(region, line_cells, strict=True)):
        filled = sum(1 for cell in cells if cell)
        if index == 0:
            joins = False
        elif len(rules) >= 2:
            joins = not any(bottom - 1 <= y <= line.top + 1 for y in rules)
        else:
            gap = line.top - bottom
            if gap < -0.25 * size:
                joins = True  # overlaps: a cell centred against a taller one
            elif spaced:
                joins = gap <= smallest + 0.25 * size and filled < width
            else:
                joins = not cells[0] and filled <= width / 2
        if joins:
            for cell, words in zip(rows[-1], cells, strict=True):
                cell.extend(words)
            bottom = max(bottom, line.bottom)
        else:
            rows.append([list(words) for words in cells])
            bottom = line.bottom
    return rows


def _rules_between(page: Page, region: list[_Line]) -> list[float]:
    """Heights of the horizontal rules drawn across most of the region, inside it."""
    left = min(w["x0"] for line in region for w in line.words)
    right = max(w["x1"] for line in region for w in line.words)
    top, bottom = region[0].bottom, region[-1].top
    heights = []
    for edge in page.horizontal_edges:
        overlap = min(edge["x1"], right) - max(edge["x0"], left)
        if top <= edge["top"] <= bottom and overlap >= 0.5 * (right - left):
            heights.append(edge["top"])
    return sorted(heights)
