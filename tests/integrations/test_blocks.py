"""integrations.slack.blocks: Slack's limits (3,000 characters a section, 50 blocks a
message), escaping, which sources are listed, the buttons, the fallback text; and a picture
of an answer as Slack would show it (test-output/slack/answer-preview.png). No database, no
model."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from chatbot.citations import Citation
from integrations.slack import blocks
from integrations.slack.blocks import (
    MAX_BLOCKS,
    SECTION_LIMIT,
    answer_blocks,
    escape,
    fallback_text,
    notice_blocks,
    split_sections,
)
from tests.integrations import blockkit_preview

REPO_ROOT = Path(__file__).resolve().parents[2]
PREVIEW_PNG = REPO_ROOT / "test-output" / "slack" / "answer-preview.png"
SOURCE_URL = "https://chat.example.test/c/17/"
HOSTILE = ["<!channel>", "<@U123>", "<https://evil|x>"]
CUT_NOTE = "longer than Slack shows"


def words_text(length: int, *, seed: int = 0) -> str:
    """Prose-like text of about ``length`` characters: words of 1 to 14 letters, some
    sentences ending in a line break or a blank line."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < length:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 14)))
        sep = rng.choices([" ", ".\n", ".\n\n"], weights=[40, 1, 1])[0]
        out.append(word + sep)
        size += len(word) + len(sep)
    return "".join(out)[:length].strip()


def section_texts(message: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in message if b["type"] == "section"]


def all_mrkdwn(message: list[dict]) -> list[str]:
    texts = []
    for block in message:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn")
    return texts


def is_cut_note(block: dict) -> bool:
    return block["type"] == "context" and CUT_NOTE in block["elements"][0]["text"]


def policy() -> Citation:
    return Citation(
        index=1,
        document_id=1,
        title="Travel and Expense Policy 2024",
        chunk_id=1,
        snippet="Domestic travel: a daily meal per diem of €45 applies...",
    )


# --- sections under 3,000 characters, cut between words ------------------------------------


def test_a_7000_character_answer_is_split_into_sections_under_the_limit_between_words():
    text = words_text(7000)
    assert len(text) >= 6990

    message = answer_blocks(text=text, citations=[], message_id=None, source_url=SOURCE_URL)
    pieces = section_texts(message)

    assert len(pieces) == 3
    assert all(0 < len(piece) <= SECTION_LIMIT for piece in pieces)
    assert all(piece == piece.strip() for piece in pieces)
    # Nothing lost, nothing cut inside a word: the words of the pieces are the words of the text.
    assert " ".join(pieces).split() == text.split()
    assert not any(is_cut_note(b) for b in message)


def test_split_sections_prefers_whitespace_and_keeps_every_word():
    text = words_text(20_000, seed=3)
    pieces = split_sections(text)
    assert all(len(piece) <= SECTION_LIMIT for piece in pieces)
    assert " ".join(pieces).split() == text.split()
    # Each cut falls on whitespace in the original: piece i ends a word, piece i+1 starts one.
    position = 0
    for piece in pieces:
        start = text.index(piece, position)
        end = start + len(piece)
        assert start == 0 or text[start - 1].isspace()
        assert end == len(text) or text[end].isspace()
        position = end


def test_a_long_unbroken_run_is_not_cut_inside_an_escape():
    """With no whitespace in reach the cut falls at the limit; it must not split the
    ``&amp;`` that escaping made of one character (the reader would see 'amp;')."""
    text = "a" * (SECTION_LIMIT - 1) + "&" + "b" * 10
    pieces = split_sections(escape(text))
    assert all(len(piece) <= SECTION_LIMIT for piece in pieces)
    assert all(escape(blockkit_preview.slack_unescape(piece)) == piece for piece in pieces)


def test_a_short_answer_is_one_section():
    assert split_sections("  The per diem is €45.  ") == ["The per diem is €45."]
    assert split_sections("") == []


# --- at most 50 blocks --------------------------------------------------------------------


def test_an_answer_needing_more_than_50_blocks_is_cut_to_50_with_a_note():
    text = words_text(60 * SECTION_LIMIT, seed=1)
    assert len(split_sections(escape(text))) > MAX_BLOCKS

    message = answer_blocks(
        text=text, citations=[policy()], message_id=42, source_url=SOURCE_URL, shareable=True
    )

    assert len(message) == MAX_BLOCKS
    notes = [b for b in message if is_cut_note(b)]
    assert len(notes) == 1
    # The note follows the last shown section; sources and buttons still make it in.
    assert message[message.index(notes[0]) - 1]["type"] == "section"
    assert any("Travel and Expense Policy 2024" in t for t in section_texts(message))
    assert message[-1]["type"] == "actions"
    shown_words = " ".join(section_texts(message)[:-1]).split()
    assert shown_words == text.split()[: len(shown_words)]


def test_a_cut_answer_without_sources_or_buttons_stays_under_50_blocks():
    text = words_text(60 * SECTION_LIMIT, seed=2)
    message = answer_blocks(text=text, citations=[], message_id=None, source_url=SOURCE_URL)
    assert len(message) <= MAX_BLOCKS
    assert is_cut_note(message[-1])


@pytest.mark.parametrize(("sections", "cut"), [(46, False), (47, True)])
def test_the_note_appears_only_when_sections_were_dropped(sections, cut):
    text = "\n\n".join(f"Paragraph {i}. " + "x" * (SECTION_LIMIT - 20) for i in range(sections))
    assert len(split_sections(escape(text))) == sections

    message = answer_blocks(
        text=text, citations=[policy()], message_id=42, source_url=SOURCE_URL, shareable=True
    )

    assert len(message) <= MAX_BLOCKS
    assert any(is_cut_note(b) for b in message) is cut


# --- escaping ------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE)
def test_mentions_and_links_in_the_answer_text_are_escaped(hostile):
    message = answer_blocks(
        text=f"Ask {hostile} about it.", citations=[], message_id=None, source_url=SOURCE_URL
    )
    texts = all_mrkdwn(message)
    assert texts == [f"Ask {escape(hostile)} about it."]
    assert "<" not in texts[0] and ">" not in texts[0]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_mentions_and_links_in_a_citation_title_are_escaped(hostile):
    cited = Citation(index=1, document_id=3, title=f"Policy {hostile}", chunk_id=9)
    message = answer_blocks(
        text="See [1].", citations=[cited], message_id=None, source_url=SOURCE_URL
    )
    sources = section_texts(message)[-1]
    # The one piece of markup is our own link to the conversation; the title is its label.
    assert re.findall(r"<([^<>]*)>", sources) == [f"{SOURCE_URL}|Policy {escape(hostile)}"]
    assert not re.search(r"<[!@#]", sources)
    assert "<https://evil" not in sources


def test_ampersands_are_escaped_once():
    message = answer_blocks(
        text="R&D <b> & &amp;", citations=[], message_id=None, source_url=SOURCE_URL
    )
    assert section_texts(message) == ["R&amp;D &lt;b&gt; &amp; &amp;amp;"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_notices_are_escaped(hostile):
    assert notice_blocks(f"Hello {hostile}") == [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"Hello {escape(hostile)}"}}
    ]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_the_fallback_text_cannot_mention_or_forge_links(hostile):
    """Slack posts the fallback as the message's top-level ``text`` (mrkdwn, and what mobile
    notifications show): it must be escaped like the blocks."""
    cited = Citation(index=1, document_id=3, title=f"Policy {hostile}", chunk_id=9)
    fallback = fallback_text(text=f"Ask {hostile} about it.", citations=[cited])
    assert not re.search(r"<[!@#]", fallback)
    assert "<https://evil" not in fallback


# --- which sources are listed --------------------------------------------------------------


def test_unavailable_citations_are_not_listed():
    withheld = Citation(index=2, available=False)
    message = answer_blocks(
        text="Per diem is €45 [1]; hotels are capped [2].",
        citations=[policy(), withheld],
        message_id=None,
        source_url=SOURCE_URL,
    )
    sources = section_texts(message)[-1]
    assert sources == f"[1] <{SOURCE_URL}|Travel and Expense Policy 2024>"
    assert "[2]" not in sources
    assert "[2]" not in fallback_text(text="Per diem.", citations=[policy(), withheld])


def test_no_sources_heading_when_every_citation_is_withheld():
    message = answer_blocks(
        text="Hotels are capped [2].",
        citations=[Citation(index=2, available=False), policy().withheld()],
        message_id=None,
        source_url=SOURCE_URL,
    )
    assert message == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Hotels are capped [2]."}}
    ]


def test_an_untitled_source_is_still_listed():
    message = answer_blocks(
        text="See [3].",
        citations=[Citation(index=3, document_id=5, chunk_id=2)],
        message_id=None,
        source_url=SOURCE_URL,
    )
    assert section_texts(message)[-1] == f"[3] <{SOURCE_URL}|untitled>"


# --- buttons -------------------------------------------------------------------------------


def test_feedback_buttons_name_the_message_and_share_is_absent_by_default():
    message = answer_blocks(
        text="Per diem is €45 [1].", citations=[policy()], message_id=42, source_url=SOURCE_URL
    )
    actions = message[-1]
    assert actions["type"] == "actions"
    assert actions["block_id"] == "answer-42"
    buttons = actions["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (f"{blocks.FEEDBACK_ACTION}:up", "up:42"),
        (f"{blocks.FEEDBACK_ACTION}:down", "down:42"),
    ]
    assert all(b["type"] == "button" and b["text"]["type"] == "plain_text" for b in buttons)
    assert all(b["value"].endswith(":42") for b in buttons)


def test_a_share_button_only_when_shareable():
    message = answer_blocks(
        text="Per diem is €45 [1].",
        citations=[policy()],
        message_id=42,
        source_url=SOURCE_URL,
        shareable=True,
    )
    buttons = message[-1]["elements"]
    assert [b["action_id"] for b in buttons] == [
        f"{blocks.FEEDBACK_ACTION}:up",
        f"{blocks.FEEDBACK_ACTION}:down",
        blocks.SHARE_ACTION,
    ]
    assert buttons[-1]["value"] == "42"


def test_no_buttons_without_a_message():
    message = answer_blocks(
        text="Per diem is €45 [1].",
        citations=[policy()],
        message_id=None,
        source_url=SOURCE_URL,
        shareable=True,
    )
    assert all(b["type"] != "actions" for b in message)


# --- fallback text -------------------------------------------------------------------------


def test_the_fallback_text_names_the_sources():
    other = Citation(index=2, document_id=2, title="Remote Work Guidelines", chunk_id=4)
    fallback = fallback_text(text="Per diem is €45 [1] [2].", citations=[policy(), other])
    assert fallback.startswith("Per diem is €45 [1] [2].")
    assert "[1] Travel and Expense Policy 2024" in fallback
    assert "[2] Remote Work Guidelines" in fallback
    assert fallback_text(text="No sources here.", citations=[]) == "No sources here."


# --- the preview renderer and the picture --------------------------------------------------


def test_the_preview_renders_mrkdwn_safely():
    rendered = blockkit_preview.render_mrkdwn(
        "*Bold* and _italic_ and `a &lt; b` and <https://x.test/?a=1&amp;b=2|the &amp; link>\n"
        "R&amp;D &lt;script&gt;alert(1)&lt;/script&gt; <@U123> <!channel> <javascript:x|bad>"
    )
    assert "<strong>Bold</strong>" in rendered
    assert "<em>italic</em>" in rendered
    assert "<code>a &lt; b</code>" in rendered
    assert '<a href="https://x.test/?a=1&amp;b=2" rel="noopener">the &amp; link</a>' in rendered
    assert "<br>" in rendered
    assert "R&amp;D &lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "<script" not in rendered
    assert '<span class="mention">@U123</span>' in rendered
    assert '<span class="mention">@channel</span>' in rendered
    assert "javascript:" not in rendered  # no link but http(s) and mailto
    assert rendered.endswith(" bad")


@pytest.mark.browser
def test_an_answer_as_slack_shows_it():
    answer = "The domestic daily meal per diem is €45 [1]."
    message = answer_blocks(
        text=answer, citations=[policy()], message_id=7, source_url=SOURCE_URL, shareable=True
    )
    page = blockkit_preview.render_message(message)

    assert answer in page
    assert "Travel and Expense Policy 2024" in page
    assert "<source" not in page and "</source>" not in page
    for label in ("Ask Veluna", "APP", "Helpful", "Not helpful", "Share in channel"):
        assert label in page
    assert "http" not in page.split("<body>")[0]  # nothing fetched: no fonts, no CDNs

    if PREVIEW_PNG.exists():
        PREVIEW_PNG.unlink()
    path = blockkit_preview.screenshot(page, PREVIEW_PNG)

    assert path == PREVIEW_PNG
    data = PREVIEW_PNG.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5 * 1024
