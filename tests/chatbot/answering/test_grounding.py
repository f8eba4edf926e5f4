from chatbot.answering.grounding import check_answer, cited_indices, key_figures
from chatbot.answering.prompts import Source

SOURCES = [
    Source(
        index=1,
        title="Travel policy",
        text="Hotels are reimbursed up to 180 EUR per night in London. Breakfast is included.",
        chunk_id=11,
        document_id=1,
    ),
    Source(
        index=2,
        title="A320 manual",
        text="Task 32-11-00: tighten the axle nut to 1,350 Nm.",
        chunk_id=12,
        document_id=2,
    ),
]
QUESTION = "What is the hotel limit in London?"


def test_a_correct_cited_answer_passes_unchanged():
    result = check_answer(answer="Up to 180 EUR per night [1].", sources=SOURCES, question=QUESTION)

    assert result.grounded and not result.fallback_used
    assert result.text == "Up to 180 EUR per night [1]."
    assert result.cited == (1,)


def test_a_fabricated_figure_triggers_the_fallback_with_a_quote():
    result = check_answer(answer="Up to 250 EUR per night [1].", sources=SOURCES, question=QUESTION)

    assert not result.grounded and result.fallback_used
    assert "250" not in result.text
    assert result.text.startswith("I could not produce a reliable answer from the model.")
    assert '[1] Travel policy: "Hotels are reimbursed up to 180 EUR per night in London.' in (
        result.text
    )
    assert result.cited == (1,)


def test_a_figure_from_an_uncited_source_is_not_grounded():
    result = check_answer(
        answer="Torque is 1,350 Nm [1].", sources=SOURCES, question="What torque for the axle nut?"
    )

    assert result.fallback_used
    assert result.cited == (2,)  # the quote comes from the passage about the axle nut


def test_citing_a_source_that_was_not_shown_is_not_grounded():
    result = check_answer(answer="Up to 180 EUR [3].", sources=SOURCES, question=QUESTION)

    assert result.fallback_used and "[3]" not in result.text


def test_an_answer_without_citation_is_not_grounded_but_dont_know_is():
    uncited = check_answer(answer="Up to 180 EUR per night.", sources=SOURCES, question=QUESTION)
    dont_know = check_answer(
        answer="I don't know based on the available documents.", sources=SOURCES, question=QUESTION
    )

    assert uncited.fallback_used
    assert dont_know.grounded and not dont_know.fallback_used and dont_know.cited == ()


def test_figures_match_whole_numbers_and_ignore_thousands_separators():
    assert check_answer(
        answer="1350 Nm for task 32-11-00 [2].", sources=SOURCES, question="torque?"
    ).grounded
    assert check_answer(answer="80 EUR [1].", sources=SOURCES, question=QUESTION).fallback_used
    assert key_figures("On 12.03.2024 at 08:30, see HW-17 [2].") == {"12.03.2024", "08:30", "hw-17"}
    assert cited_indices("As [2] and [1, 2] say") == (2, 1)
