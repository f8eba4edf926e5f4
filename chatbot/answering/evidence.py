"""Which part of each retrieved passage the model reads: its sentences and table rows that
match the question, within a budget, in their original order.

A passage is a ~200-token chunk; most of it is about something else. The small default
model reads its last 512 tokens with most of its layers, so fewer, sharper lines near the
question leave less to copy wrongly. Pure: terms as the grounding check reads them.
"""

from __future__ import annotations

from chatbot.answering.grounding import _blocks, _sentences, _Table, _terms

EVIDENCE_CHARS = 480  # per passage; a sentence either side of the best one, or a table


def select_evidence(*, question: str, text: str, max_chars: int = EVIDENCE_CHARS) -> str:
    """The lines of ``text`` that share most terms with the question (ties: earlier), kept
    in document order within ``max_chars``; a table keeps its header row with its best
    rows. The whole text when it already fits or nothing matches."""
    if len(text) <= max_chars:
        return text
    wanted = _terms(question)
    pieces: list[tuple[int, str, int]] = []  # (order, text, score)
    for block in _blocks(text):
        if isinstance(block, _Table):
            header = " | ".join(block.header)
            for row in block.rows:
                line = " | ".join(row)
                score = len(wanted & _terms(line + " " + header))
                pieces.append((len(pieces), f"{header}\n{line}", score))
        else:
            for sentence in _sentences(block):
                pieces.append((len(pieces), sentence, len(wanted & _terms(sentence))))
    if not pieces or max(score for _, _, score in pieces) == 0:
        return text
    chosen: list[tuple[int, str, int]] = []
    used = 0
    for piece in sorted(pieces, key=lambda p: (-p[2], p[0])):
        if piece[2] == 0:
            break
        if used + len(piece[1]) > max_chars and chosen:
            continue
        chosen.append(piece)
        used += len(piece[1]) + 1
    return _join(sorted(chosen))


def _join(pieces: list[tuple[int, str, int]]) -> str:
    """Rows of one table share one header line."""
    lines: list[str] = []
    header = None
    for _, text, _ in pieces:
        if "\n" in text:
            head, row = text.split("\n", 1)
            if head != header:
                lines.append(head)
                header = head
            lines.append(row)
        else:
            header = None
            lines.append(text)
    return "\n".join(lines)
