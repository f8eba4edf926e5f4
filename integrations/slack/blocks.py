"""Answers as Slack Block Kit: the text in sections under Slack's 3,000-character limit,
numbered sources linking to the conversation in the web app, feedback buttons, and a
plain-text fallback. At most 50 blocks, as Slack allows."""

from __future__ import annotations

from chatbot.citations import Citation

SECTION_LIMIT = 3000
MAX_BLOCKS = 50
FEEDBACK_ACTION = "feedback"
SHARE_ACTION = "share"
_RESERVED_BLOCKS = 4  # sources header, sources, actions, and a note that text was cut


def escape(text: str) -> str:
    """Slack's mrkdwn escapes: &, < and > (so no text can forge a link or a mention)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def split_sections(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at paragraph, line or word
    ends where possible."""
    pieces, rest = [], text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        cut = cut if cut > limit // 2 else limit
        entity = rest.rfind("&", max(0, cut - 4), cut)  # never split "&amp;" and the like
        if entity != -1 and ";" not in rest[entity:cut]:
            cut = entity
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def answer_blocks(
    *,
    text: str,
    citations: list[Citation],
    message_id: int | None,
    source_url: str,
    shareable: bool = False,
) -> list[dict]:
    sections = split_sections(escape(text))
    room = MAX_BLOCKS - _RESERVED_BLOCKS
    blocks = [_section(piece) for piece in sections[:room]]
    if len(sections) > room:
        blocks.append(_context("The answer is longer than Slack shows; open it in the web app."))
    shown = [c for c in citations if c.available]
    if shown:
        blocks.append(_context("*Sources*"))
        lines = [f"[{c.index}] <{source_url}|{escape(c.title) or 'untitled'}>" for c in shown]
        blocks.append(_section("\n".join(lines)[:SECTION_LIMIT]))
    if message_id is not None:
        blocks.append(_actions(message_id, shareable=shareable))
    return blocks[:MAX_BLOCKS]


def plain_text(*, text: str, citations: list[Citation], source_url: str = "") -> str:
    """The answer and its sources' titles as plain text (for platforms without mrkdwn),
    then ``source_url`` (the conversation in the web app) on a line of its own, if given."""
    titles = "; ".join(f"[{c.index}] {c.title}" for c in citations if c.available)
    if not titles:
        return text
    link = f"\n{source_url}" if source_url else ""
    return f"{text}\n\nSources: {titles}{link}"


def fallback_text(*, text: str, citations: list[Citation]) -> str:
    """What notifications and clients without Block Kit show: Slack reads it as mrkdwn too,
    so it is escaped like the blocks."""
    return escape(plain_text(text=text, citations=citations))


def notice_blocks(text: str) -> list[dict]:
    return [_section(escape(text))]


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _actions(message_id: int, *, shareable: bool) -> dict:
    elements = [
        _button("Helpful", f"{FEEDBACK_ACTION}:up", f"up:{message_id}"),
        _button("Not helpful", f"{FEEDBACK_ACTION}:down", f"down:{message_id}"),
    ]
    if shareable:
        elements.append(_button("Share in channel", SHARE_ACTION, str(message_id)))
    return {"type": "actions", "block_id": f"answer-{message_id}", "elements": elements}


def _button(label: str, action_id: str, value: str) -> dict:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
