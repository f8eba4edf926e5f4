"""Check a generated answer's claims against the sources it was shown.

A claim is checked, not a token: each figure in the answer (other than one echoed from the
question) must appear in a source sentence or table cell that is about the thing asked (it
shares a term of the question; in a table, the cell's row and column both do, where the
question names any). A right figure under the wrong citation is re-cited to the source
that holds it. An answer with no figures must be supported by its cited passages. Prompt
markup, copied table rows, repeated sentences and text addressed to the assistant never
reach the user.

When the model's text cannot be kept, the answer is the best matching sentence or table
row, quoted and cited ("The Travel policy says: “…” [1]"); when nothing the asker may see
matches the question well enough, it is the not-found answer, the same whether the answer
exists elsewhere or nowhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from chatbot.answering.prompts import DONT_KNOW, Source

NOT_FOUND_ANSWER = "I could not find this in the documents you have access to."
QUOTE_CHARS = 300
# A quote must match at least this share of the question's terms (and one of them).
MIN_QUOTE_MATCH = 0.5

_CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")
# Numbers, amounts, dates, times and codes: any word that contains a digit ("1,350",
# "12.03.2024", "08:30", "HW-17", "32-11-00", "A320").
_FIGURE = re.compile(r"[\w$€£¥%./:,-]*\d[\w$€£¥%./:,-]*")
_CURRENCY = re.compile(r"^(?:[$€£¥]|eur|usd|gbp)|(?:[$€£¥])$")
_DONT_KNOW = re.compile(
    r"\b(i\s+(?:do\s*n[o']t|don't|cannot|can't|could\s*not)\s+(?:know|find|tell|answer)"
    r"|not\s+(?:contained|mentioned|stated|found)\s+in\s+the\s+(?:sources|documents))",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“(]?[A-Z0-9€$£])|\n+")
_MARKUP = re.compile(r"<\s*/?\s*(?:source|question)\b[^>]*>?|</?\w+>", re.IGNORECASE)
# Text that addresses the assistant, as a planted instruction in a document would.
_ADDRESSED = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|rules|prompt)\b"
    r"|\b(system prompt|you are (?:now )?(?:an? )?(?:assistant|ai|language model|chatbot))\b"
    r"|\b(?:as an ai|assistant:)",
    re.IGNORECASE,
)
_STOPWORDS = frozenset(
    """a an the and or of to in on at by for from with into onto over under about as is are
    was were be been being do does did done has have had having can could should would will
    shall may might must what when where which who whom whose why how that this these those
    there their they them it its our ours you your yours we us i me my mine he she his her
    any all some each every per not no yes if then than so such also only just very more
    most much many long often get got tell me please need want know say said give given
    veluna air company staff employee employees""".split()
)


@dataclass(frozen=True)
class GroundingResult:
    text: str
    grounded: bool
    fallback_used: bool
    cited: tuple[int, ...]  # source indices the final text cites, in order of appearance
    reason: str = ""
    not_found: bool = False


@dataclass(frozen=True)
class _Unit:
    """A sentence, or a table cell with its row and column, of one source."""

    source: Source
    text: str  # what a quote shows (a row is rendered with its column names)
    terms: frozenset[str]
    row_terms: frozenset[str] = frozenset()  # a cell: its row's first cell
    column_terms: frozenset[str] = frozenset()  # a cell: its column's header
    row_sets: tuple[frozenset[str], ...] = ()  # a cell: every row's first cell, as terms
    column_sets: tuple[frozenset[str], ...] = ()  # a cell: every column's header, as terms


def cited_indices(text: str) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        for number in match.group(1).split(","):
            seen.setdefault(int(number), None)
    return tuple(seen)


def key_figures(text: str) -> set[str]:
    """Figures in ``text``, normalised, ignoring citation markers like [2]."""
    without_citations = _CITATION.sub(" ", text)
    figures = set()
    for match in _FIGURE.finditer(without_citations):
        figure = _normalise(match.group(0))
        if any(ch.isdigit() for ch in figure):
            figures.add(figure)
    return figures


def is_dont_know(text: str) -> bool:
    return DONT_KNOW.lower() in text.lower() or bool(_DONT_KNOW.search(text))


def clean_answer(text: str) -> str:
    """The answer without prompt markup, text addressed to the assistant, repeated
    sentences or a trailing unfinished sentence (when a finished one precedes it)."""
    text = _MARKUP.sub(" ", text)
    kept: list[str] = []
    seen: set[str] = set()
    for sentence in _sentences(text):
        key = " ".join(_WORD.findall(_CITATION.sub(" ", sentence).lower()))
        if not key or key in seen or _ADDRESSED.search(sentence):
            continue
        seen.add(key)
        kept.append(sentence)
    if len(kept) > 1 and not _finished(kept[-1]):
        kept.pop()
    return " ".join(kept).strip()


def check_answer(*, answer: str, sources: Sequence[Source], question: str) -> GroundingResult:
    """Keep a grounded answer (cleaned, its citations repaired); replace anything else with
    a quoted passage, or the not-found answer when no passage matches the question."""
    text = clean_answer(answer)
    by_index = {source.index: source for source in sources}
    if is_dont_know(text) and not cited_indices(text) and not key_figures(text):
        return not_found_result()
    if not text:
        return fallback(question=question, sources=sources, reason="the answer is empty")
    if "|" in text:
        return fallback(question=question, sources=sources, reason="a copied table row")
    cited = tuple(i for i in cited_indices(text) if i in by_index)
    echoed = key_figures(text) & key_figures(question)
    figures = key_figures(text) - echoed
    if unknown := [f for f in sorted(echoed) if not _in_any(f, sources)]:
        # The question's own figure names what is asked, but it is no answer unless a
        # source states it ("is it 999 EUR?" must not come back as "it is 999 EUR").
        return fallback(
            question=question,
            sources=sources,
            reason=f"the figure {unknown[0]!r} comes from the question, not the sources",
        )
    if figures:
        holders, reason = _figure_holders(figures, sources=sources, question=question)
        if reason:
            return fallback(question=question, sources=sources, reason=reason)
        if not set(holders) & set(cited):
            cited = holders[:1]  # the right figure under the wrong (or no) citation
    elif not cited:
        return fallback(question=question, sources=sources, reason="the answer cites no source")
    elif _asks_for_a_figure(question) or _states_figures(
        best_unit(question=question, sources=sources)
    ):
        # The question asks for a number, code or time, or the passage that answers it gives
        # one; an answer without one ("The torque applies to the bolt.") does not answer it.
        return fallback(
            question=question, sources=sources, reason="the answer leaves out the figure asked"
        )
    for sentence in _sentences(text):
        if key_figures(sentence) - echoed:
            continue  # its figures were checked above
        cited_sources = [by_index[i] for i in cited]
        if not _supported(sentence, cited_sources):
            return fallback(
                question=question, sources=sources, reason="the cited passages do not say this"
            )
        if not _about_the_question(sentence, cited_sources, question):
            return fallback(
                question=question, sources=sources, reason="the cited line is about something else"
            )
    final = _with_citations(text, cited)
    return GroundingResult(text=final, grounded=True, fallback_used=False, cited=cited)


MAX_SENTENCES = 3  # a factual answer; more is the small model running on


class SentenceGate:
    """Lets an answer through a sentence at a time, each only once the answer so far (with
    the model's citation) passes check_answer: the user never reads text that is then
    withdrawn. ``stopped`` asks the caller to stop generating: a sentence failed, the
    model repeats itself or has said enough."""

    DONE = ""  # ``reason`` while every sentence so far passed

    def __init__(self, *, question: str, sources: Sequence[Source]):
        self.question = question
        self.sources = sources
        self.accepted: list[str] = []
        self.result: GroundingResult | None = None
        self.pending = ""
        self.stopped = False
        self.not_found = False
        self.reason = "the model wrote nothing"
        self._seen: set[str] = set()

    def push(self, text: str, *, citations: str) -> list[str]:
        if self.stopped or not text:
            return []
        self.pending += text
        parts = _SENTENCE_END.split(self.pending)
        complete, self.pending = parts[:-1], parts[-1]
        return self._take(complete, citations=citations)

    def close(self, *, citations: str) -> list[str]:
        rest, self.pending = self.pending, ""
        return self._take([rest] if rest.strip() else [], citations=citations)

    def _take(self, sentences: list[str], *, citations: str) -> list[str]:
        shown = []
        for raw in sentences:
            if self.stopped:
                break
            sentence = clean_answer(raw)
            key = " ".join(_WORD.findall(_CITATION.sub(" ", raw).lower()))
            if not sentence:
                if key in self._seen or _ADDRESSED.search(raw):
                    self.stopped = True  # repeating itself, or repeating a planted note
                continue
            candidate = " ".join([*self.accepted, sentence])
            if citations and not cited_indices(candidate):
                candidate = f"{candidate} {citations}"
            result = check_answer(answer=candidate, sources=self.sources, question=self.question)
            if not result.grounded or result.fallback_used or result.not_found:
                self.stopped = True
                self.not_found = result.not_found and not self.accepted
                self.reason = result.reason or "the answer does not match its sources"
                break
            self._seen.add(key)
            self.accepted.append(sentence)
            self.result = result
            shown.append(_CITATION.sub("", sentence).strip() + " ")
            self.reason = self.DONE
            if len(self.accepted) >= MAX_SENTENCES:
                self.stopped = True
        return [text for text in shown if text.strip()]


def not_found_result(reason: str = "") -> GroundingResult:
    return GroundingResult(
        text=NOT_FOUND_ANSWER, grounded=True, fallback_used=False, cited=(), reason=reason,
        not_found=True,
    )  # fmt: skip


def fallback(*, question: str, sources: Sequence[Source], reason: str) -> GroundingResult:
    """The passage that best matches the question, quoted and cited; the not-found answer
    when no passage matches it well enough."""
    best = best_unit(question=question, sources=sources)
    if best is None:
        return not_found_result(reason)
    quote = best.text if len(best.text) <= QUOTE_CHARS else best.text[: QUOTE_CHARS - 1] + "…"
    text = f"The {_title(best.source)} says: “{quote.rstrip()}” [{best.source.index}]"
    return GroundingResult(
        text=text,
        grounded=False,
        fallback_used=True,
        cited=(best.source.index,),
        reason=reason,
    )


def best_unit(*, question: str, sources: Sequence[Source]) -> _Unit | None:
    """The sentence or table row of the sources that shares most of the question's terms
    (ties: the better-ranked source, then the earlier unit); None when the best shares
    fewer than MIN_QUOTE_MATCH of them."""
    wanted = _terms(question)
    if not wanted:
        return None
    best, best_score = None, (0, 0)
    for source in sorted(sources, key=lambda s: s.index):
        title = _terms(source.title)
        for unit in _rows_and_sentences(source):
            # Most terms of the question; then the fewest other words (the sharper one).
            score = (len(wanted & (unit.terms | title)), -len(unit.terms - wanted))
            if score > best_score:
                best, best_score = unit, score
    if best is None or best_score[0] < max(1, math.ceil(MIN_QUOTE_MATCH * len(wanted))):
        return None
    return best


def passage_for(question: str, source: Source) -> str:
    """The part of ``source`` that best matches the question (for a citation's snippet)."""
    unit = best_unit(question=question, sources=[source])
    return unit.text if unit else source.text


def _figure_holders(
    figures: set[str], *, sources: Sequence[Source], question: str
) -> tuple[tuple[int, ...], str]:
    """Source indices whose units hold every figure as something the question asks about;
    or a reason why a figure is not grounded."""
    wanted = _terms(question)
    units = [u for s in sources for u in _cells_and_sentences(s)]
    # The figure must come from (nearly) the best match for the question among the
    # passages that state any figure: not the neighbouring row's, nor another sentence's.
    best = max((_score(u, wanted) for u in units if any(c.isdigit() for c in u.text)), default=0)
    holders: tuple[int, ...] | None = None
    for figure in sorted(figures):
        found_in = [u for u in units if _figure_in(figure, u)]
        if not found_in:
            return (), f"the figure {figure!r} is not in the sources"
        attached = [
            u
            for u in found_in
            if _about(u, wanted)
            and _score(u, wanted) >= best - 1
            and not _named_for_another_figure(u, figure, wanted)
            and not _outranked_by_a_twin(u, units, wanted)
        ]
        if not attached:
            return (), f"the figure {figure!r} is about something else in the sources"
        indices = tuple(dict.fromkeys(u.source.index for u in attached))
        holders = indices if holders is None else tuple(i for i in holders if i in indices)
        if not holders:
            return (), "the figures come from different sources"
    return holders or (), ""


def _outranked_by_a_twin(unit: _Unit, units: Sequence[_Unit], wanted: set[str]) -> bool:
    """Whether another sentence with figures fits the question better by a word the question
    names and this one lacks, while this one names a qualifier of its own: the neighbouring
    line's figure ("Nose landing gear tyres: 58 psi" when "main landing gear" is asked, and
    "Main landing gear tyres: 121 psi" is there). Table cells are decided by row and column."""
    if unit.row_sets or unit.column_sets:
        return False
    mine = _score(unit, wanted)
    own = {t for t in unit.terms - wanted if not any(c.isdigit() for c in t)}
    for other in units:
        if other is unit or other.row_sets or other.column_sets or not key_figures(other.text):
            continue
        better = _score(other, wanted) > mine and (wanted & other.terms) - unit.terms
        if better and own - other.terms:
            return True
    return False


def _named_for_another_figure(unit: _Unit, figure: str, wanted: set[str]) -> bool:
    """In a sentence with several figures ("140 EUR per night in Germany and 180 EUR per
    night in London"), whether the question names something the sentence says only around
    another figure ("London" for 140). The words before the first figure are everyone's."""
    if unit.row_sets or unit.column_sets:
        return False  # a table cell: its row and column already decided
    text = _compact(" ".join(unit.text.lower().split()))
    spans = [m for m in _FIGURE.finditer(text) if any(c.isdigit() for c in m.group(0))]
    if len(spans) < 2:
        return False
    bare = _CURRENCY.sub("", _compact(figure)) or _compact(figure)
    mine = [i for i, m in enumerate(spans) if _normalise(_CURRENCY.sub("", m.group(0))) == bare]
    if not mine:
        return False
    bounds = [0, *(m.start() for m in spans[1:]), len(text)]
    regions = [  # each figure's words: from its own start to the next figure
        text[spans[i].end() : bounds[i + 1]] for i in range(len(spans))
    ]
    before = [text[(spans[i - 1].end() if i else 0) : spans[i].start()] for i in range(len(spans))]
    shared = _terms(text[: spans[0].start()])
    own = shared.union(*(_terms(before[i]) | _terms(regions[i]) for i in mine))
    others = set().union(
        *(_terms(regions[j]) | (_terms(before[j]) if j else set())
          for j in range(len(spans)) if j not in mine)
    )  # fmt: skip
    return bool((wanted & others) - own)


# Questions whose answer is a number, an amount, a time, a date or a code.
_FIGURE_QUESTION = re.compile(
    r"\bhow\s+(?:many|much|long|often|far|soon|early|late|old|high|low|cold|warm|hot|fast)\b"
    r"|\bwhat\s+(?:time|date|day|year|percentage|amount|rate|price|cost|fee|number|code|"
    r"extension|reference|temperature|pressure|torque)\b"
    r"|\bwhich\s+(?:number|extension|code|form|reference|date|day)\b"
    r"|\b(?:dial|ring|extension|phone number|part number|case number|code)\b",
    re.IGNORECASE,
)


def _asks_for_a_figure(question: str) -> bool:
    return bool(_FIGURE_QUESTION.search(question))


def _about_the_question(sentence: str, cited: Sequence[Source], question: str) -> bool:
    """A sentence without figures ("Ingrid Vasquez.") answers the question only if it, or
    the line of the cited passages it comes from, names something the question asks about:
    a name copied from "Commercial contact: Ingrid Vasquez" is not the CFO's."""
    wanted = _terms(question)
    said = _terms(_CITATION.sub(" ", sentence))
    if not wanted or said & wanted:
        return True
    units = [u for source in cited for u in _rows_and_sentences(source)]
    source_line = max(units, key=lambda u: len(said & u.terms), default=None)
    return source_line is not None and bool(source_line.terms & wanted)


def _states_figures(unit: _Unit | None) -> bool:
    return unit is not None and bool(key_figures(unit.text))


def _in_any(figure: str, sources: Sequence[Source]) -> bool:
    return any(_figure_in(figure, _Unit(s, f"{s.title} {s.text}", frozenset())) for s in sources)


def _score(unit: _Unit, wanted: set[str]) -> int:
    if unit.row_sets or unit.column_sets:
        return len(wanted & (unit.row_terms | unit.column_terms))
    return len(wanted & unit.terms)


def _about(unit: _Unit, wanted: set[str]) -> bool:
    """Whether the unit is about what the question asks. A table cell is when its row is
    the table's best fit for the question (where the question names any row) and so is
    its column: the neighbouring row's or column's figure is not the answer."""
    if not wanted:
        return True
    if not unit.row_sets and not unit.column_sets:
        return bool(wanted & unit.terms)
    row_fits = _best_fit(unit.row_terms, unit.row_sets, wanted)
    column_fits = _best_fit(unit.column_terms, unit.column_sets, wanted)
    return row_fits and column_fits and bool(wanted & (unit.row_terms | unit.column_terms))


def _best_fit(
    terms: frozenset[str], alternatives: tuple[frozenset[str], ...], wanted: set[str]
) -> bool:
    """True when the question names none of the alternatives, or ``terms`` fits it at least
    as well as any of them (shared terms, less half a point per term it does not ask)."""
    if not any(wanted & other for other in alternatives):
        return True

    def fit(candidate: frozenset[str]) -> float:
        return len(wanted & candidate) - 0.5 * len(candidate - wanted)

    return bool(wanted & terms) and fit(terms) >= max(fit(other) for other in alternatives)


def _supported(text: str, cited: Sequence[Source]) -> bool:
    """Most of an answer's own words are in its cited passages."""
    said = _terms(_CITATION.sub(" ", text))
    if not said:
        return False
    known = set().union(*(_terms(s.text + " " + s.title) for s in cited))
    return len(said & known) >= 0.6 * len(said)


def _with_citations(text: str, cited: tuple[int, ...]) -> str:
    if cited and set(cited_indices(text)) == set(cited):
        return text
    bare = _CITATION.sub("", text).strip()
    bare = re.sub(r"\s+([.,;:!?])", r"\1", bare)
    return f"{bare} {''.join(f'[{i}]' for i in cited)}".strip()


# Sources as units: sentences, and pipe tables as rows (for quotes) or cells (for claims).


def _rows_and_sentences(source: Source) -> list[_Unit]:
    units = []
    for block in _blocks(source.text):
        if isinstance(block, _Table):
            units.extend(
                _Unit(source, block.render(row), _terms(" ".join([*block.header, *row])))
                for row in block.rows
            )
        else:
            units.extend(_Unit(source, s, _terms(s)) for s in _sentences(block))
    return units


def _cells_and_sentences(source: Source) -> list[_Unit]:
    units = []
    for block in _blocks(source.text):
        if isinstance(block, _Table):
            row_sets = tuple(frozenset(_terms(row[0])) for row in block.rows)
            column_sets = tuple(frozenset(_terms(header)) for header in block.header[1:])
            for row in block.rows:
                row_terms = _terms(row[0])
                for position, cell in enumerate(row[1:], start=1):
                    header = block.header[position] if position < len(block.header) else ""
                    units.append(
                        _Unit(
                            source,
                            cell,
                            _terms(" ".join([*block.header, *row])),
                            row_terms=frozenset(row_terms),
                            column_terms=frozenset(_terms(header)),
                            row_sets=row_sets,
                            column_sets=column_sets,
                        )
                    )
        else:
            units.extend(_Unit(source, s, _terms(s)) for s in _sentences(block))
    return units


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def render(self, row: tuple[str, ...]) -> str:
        named = [
            f"{self.header[i]}: {cell}" if i < len(self.header) else cell
            for i, cell in enumerate(row[1:], start=1)
        ]
        return f"{row[0]}: {'; '.join(named)}" if named else row[0]


def _blocks(text: str) -> list[str | _Table]:
    """Prose and pipe tables, in order. A table's lines hold " | "; its first line is the
    header, and the prose glued to its first or last line by the chunker is split off."""
    blocks: list[str | _Table] = []
    lines = text.split("\n")
    prose: list[str] = []
    table: list[list[str]] = []
    for line in lines:
        if line.count("|") >= 1 and " | " in line:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not table:
                # Prose the chunker glued before the header (older chunks): a sentence of
                # a few words, then a capitalised cell. "No. of seats" is a header.
                lead, _, first = cells[0].rpartition(". ")
                if first[:1].isupper() and len(lead.split()) >= 3:
                    prose.append(lead + ".")
                    cells[0] = first
            table.append(cells)
            continue
        if table:
            blocks.extend(_flush_prose(prose))
            blocks.append(_table(table, prose_after=prose))
            table = []
        prose.append(line)
    if table:
        blocks.extend(_flush_prose(prose))
        blocks.append(_table(table, prose_after=prose))
    blocks.extend(_flush_prose(prose))
    return blocks


def _flush_prose(prose: list[str]) -> list[str]:
    text = " ".join(p for p in prose if p.strip())
    prose.clear()
    return [text] if text.strip() else []


def _table(lines: list[list[str]], *, prose_after: list[str]) -> _Table:
    width = len(lines[0])
    last = lines[-1]
    if len(last) == width and last[-1].count(" ") > 2:  # prose glued after the last cell
        cell, _, rest = last[-1].partition(" ")
        if rest[:1].isupper():  # a new sentence; "8 weeks plus 2 weeks at 50%" is a cell
            last[-1] = cell
            prose_after.append(rest)
    header = tuple(lines[0])
    rows = tuple(tuple(line) for line in lines[1:] if any(line))
    return _Table(header, rows)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s and s.strip()]


def _finished(sentence: str) -> bool:
    return bool(re.search(r"[.!?…”\"')\]]\s*(\[\d+(?:,\s*\d+)*\]\s*)*$", sentence.strip()))


def _terms(text: str) -> set[str]:
    return {
        _stem(word)
        for word in _WORD.findall(text.lower())
        if word not in _STOPWORDS and (len(word) > 2 or any(ch.isdigit() for ch in word))
    }


def _stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _title(source: Source) -> str:
    title = source.title.strip() or "document"
    return title[:1].upper() + title[1:] if title[:1].islower() else title


def _normalise(figure: str) -> str:
    return figure.strip(".,:;/-").lower()


def _figure_in(figure: str, unit: _Unit) -> bool:
    """Whole-figure match: "80" is not found in "180", "1350" matches "1,350", "45 EUR"
    matches "€45", a code matches only whole."""
    text = _compact(" ".join(unit.text.lower().split()))
    bare = _CURRENCY.sub("", _compact(figure)) or _compact(figure)
    # Not the tail of a longer code either: "2024-0193" is not "HC-2024-0193".
    pattern = re.compile(rf"(?<![\w.,])(?<![a-z]-){re.escape(bare)}(?![\w]|[.,]\d)")
    return bool(pattern.search(text))


def _compact(text: str) -> str:
    """Thousands separators dropped, and "€6.2m" read as "€6.2 million"."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return re.sub(r"(?<=\d)m\b", " million", text)
