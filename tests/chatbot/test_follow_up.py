"""A short follow-up is searched for together with the question it follows: "And for the EU?"
alone finds nothing about per diems."""

import pytest

from chatbot.answering.prompts import Turn
from chatbot.services import retrieval_query

HISTORY = [
    {"role": "user", "content": "What is the domestic meal per diem?"},
    {"role": "assistant", "content": "It is €45 [1]."},
]


@pytest.mark.parametrize(
    ("question", "query"),
    [
        ("And for the EU?", "What is the domestic meal per diem? And for the EU?"),
        ("What about partners?", "What is the domestic meal per diem? What about partners?"),
        (
            "and what does the policy say for trips of more than ten days abroad in total?",
            "What is the domestic meal per diem? and what does the policy say for trips of more "
            "than ten days abroad in total?",
        ),
        (
            "Who approves international trips for staff in the finance department?",
            "Who approves international trips for staff in the finance department?",
        ),  # long and standalone: searched as asked
    ],
)
def test_a_short_or_linked_follow_up_is_searched_with_the_previous_question(question, query):
    assert retrieval_query(question, HISTORY) == query
    assert retrieval_query(question, [Turn(t["role"], t["content"]) for t in HISTORY]) == query


def test_without_history_the_question_is_the_query():
    assert retrieval_query("And for the EU?", []) == "And for the EU?"
    assert retrieval_query("And for the EU?", HISTORY[1:]) == "And for the EU?"  # no question
