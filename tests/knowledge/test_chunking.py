"""Chunking: pure Python. Tokens are counted as words here; the pipeline counts the
embedder's tokens, and nothing below depends on which."""

from __future__ import annotations

from knowledge.ingestion.chunking import chunk_sections
from knowledge.ingestion.parsers import Section


def words(text: str) -> int:
    return len(text.split())


def chunk(text: str, **kwargs):
    return chunk_sections([Section(text=text, heading="Pay")], count_tokens=words, **kwargs)


HEADER = "Grade | Annual salary | Review month"
ROWS = [f"P{n} | €{40_000 + 1_500 * n:,} | month {n % 12 + 1}" for n in range(1, 41)]
TABLE = "\n".join([HEADER, *ROWS])


def table_rows(text: str) -> list[str]:
    return [line for line in text.split("\n") if " | " in line]


def test_a_long_table_repeats_its_header_at_the_start_of_each_chunk_and_keeps_rows_whole():
    chunks = chunk("Pay grades from 1 January.\n\n" + TABLE, chunk_tokens=60, overlap_tokens=10)

    assert len(chunks) > 3
    seen = []
    for draft in chunks:
        lines = draft.text.split("\n")
        first_row = next(i for i, line in enumerate(lines) if " | " in line)
        assert lines[first_row] == HEADER
        assert draft.token_count <= 60
        seen.extend(lines[first_row + 1 :])
    assert seen == ROWS  # every row once, whole, in order: none cut, none repeated


def test_prose_before_and_after_a_table_is_never_joined_to_a_table_line():
    text = (
        "Main landing gear tyres are checked cold. Use the calibrated gauge.\n\n"
        "Component | Pressure\nNose landing gear tyres | 58 psi\n"
        "Main landing gear tyres | 121 psi\n\n"
        "Record both readings on the card."
    )

    (draft,) = chunk(text)

    assert draft.text.split("\n") == [
        "Main landing gear tyres are checked cold. Use the calibrated gauge.",
        "Component | Pressure",
        "Nose landing gear tyres | 58 psi",
        "Main landing gear tyres | 121 psi",
        "Record both readings on the card.",
    ]


def test_a_table_that_fits_in_a_chunk_starts_a_new_one_rather_than_being_split():
    prose = " ".join(f"Sentence number {n} about pay." for n in range(8))  # 40 words
    table = "\n".join([HEADER, *ROWS[:6]])  # 42 words

    first, second = chunk(prose + "\n\n" + table, chunk_tokens=60, overlap_tokens=10)

    assert " | " not in first.text
    overlap, _, rest = second.text.partition("\n")
    assert rest == table
    assert first.text.endswith(overlap)  # the sentences the chunks share


def test_the_overlap_never_carries_rows_without_their_header():
    text = TABLE + "\n\nReviews happen once a year. " + "Pay is reviewed in March. " * 12

    chunks = chunk(text, chunk_tokens=60, overlap_tokens=20)

    for draft in chunks:
        rows = table_rows(draft.text)
        assert not rows or rows[0] == HEADER
    assert any(draft.text.startswith("Reviews happen once a year.") for draft in chunks)


def test_a_row_too_long_for_a_chunk_under_its_header_is_the_one_thing_cut():
    long_row = "P9 | " + " ".join(["allowance"] * 70) + " | month 3"

    chunks = chunk("\n".join([HEADER, ROWS[0], long_row]), chunk_tokens=40, overlap_tokens=0)

    assert all(draft.text.startswith(HEADER + "\n") for draft in chunks)
    assert all(draft.token_count <= 40 for draft in chunks)
    assert " ".join(line for d in chunks for line in d.text.split("\n")[1:]).endswith("month 3")


def test_a_single_pipe_line_is_a_line_of_its_own():
    (draft,) = chunk("Scope: all staff.\nHome | Policies | Contact\nUpdated in May.")

    assert draft.text.split("\n") == [
        "Scope: all staff.",
        "Home | Policies | Contact",
        "Updated in May.",
    ]


def test_prose_is_packed_with_an_overlap_of_whole_sentences():
    sentences = [f"Sentence {n} has five words." for n in range(12)]

    chunks = chunk(" ".join(sentences), chunk_tokens=20, overlap_tokens=5)

    assert [d.text for d in chunks[:2]] == [
        " ".join(sentences[0:4]),
        " ".join(sentences[3:7]),
    ]
    assert all("\n" not in d.text for d in chunks)
