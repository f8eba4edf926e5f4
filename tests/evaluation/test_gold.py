"""The gold sets themselves: they load, cover what the issue asks of them, and every case is
true of the workspace it asks in (a fact the cited document does not hold, or a canary the
asker can see, would score the product against a wrong key). The held-out set's workspace
shares no sentence and no figure-bearing line with the demo workspace it must be apart from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import pytest

from evaluation import holdout
from evaluation.gold import GoldSetError, available_sets, load_gold_set, parse_gold_set
from knowledge import demo


@dataclass(frozen=True)
class Workspace:
    roles_of_user: dict[str, set[str]]
    text_of_file: dict[str, str]  # the readable source of each uploaded file
    roles_of_file: dict[str, set[str]]

    def visible_files(self, case) -> set[str]:
        roles = self.roles_of_user[case.user] if case.user else set(case.roles)
        return {name for name, allowed in self.roles_of_file.items() if allowed & roles}


def workspace_of(module) -> Workspace:
    content = resources.files(module).joinpath("content")
    return Workspace(
        roles_of_user={spec["username"]: set(spec["roles"]) for spec in module.USERS},
        text_of_file={
            e.filename: content.joinpath(e.source).read_text("utf-8") for e in module.CATALOGUE
        },
        roles_of_file={entry.filename: set(entry.roles) for entry in module.CATALOGUE},
    )


DEMO = workspace_of(demo)
HOLDOUT = workspace_of(holdout)
ROLES_OF_USER = DEMO.roles_of_user
SET_WORKSPACES = {"demo": DEMO, "demo-extended": DEMO, "demo-paraphrase": DEMO, "holdout": HOLDOUT}


@pytest.mark.parametrize("name", sorted(SET_WORKSPACES))
def test_every_case_is_true_of_its_workspace(name):
    gold, workspace = load_gold_set(name), SET_WORKSPACES[name]
    for case in gold.cases:
        assert not case.user or case.user in workspace.roles_of_user, case.id
        visible = workspace.visible_files(case)
        assert set(case.cite) <= visible, f"{case.id} cites what its asker cannot see"
        if not case.not_found:
            assert any(case.facts_in(workspace.text_of_file[f]) for f in case.cite), case.id
        hidden = set(workspace.text_of_file) - visible
        hidden_text = "\n".join(workspace.text_of_file[f] for f in hidden)
        visible_text = "\n".join(workspace.text_of_file[f] for f in visible)
        for canary in case.never:
            assert canary.lower() not in visible_text.lower(), f"{case.id}: {canary} is visible"
            assert canary.lower() in hidden_text.lower(), f"{case.id}: {canary} is nowhere"


def test_every_shipped_set_asks_in_a_known_workspace():
    assert set(available_sets()) == set(SET_WORKSPACES)


def test_the_demo_set_covers_every_role_and_every_kind_of_case():
    gold = load_gold_set("demo")
    assert len(gold.cases) >= 40
    assert set(available_sets()) >= {"demo", "demo-extended", "demo-paraphrase", "holdout"}
    roles = set().union(*(ROLES_OF_USER.get(c.user, set(c.roles)) for c in gold.cases))
    assert roles == set(demo.role_names())
    tags = {tag for case in gold.cases for tag in case.tags}
    assert tags >= {
        "out-of-scope", "other-role", "near-duplicate", "identifier", "follow-up", "injection",
    }  # fmt: skip
    assert set(demo.FACTS) <= {case.question for case in gold.cases}
    assert all(case.never for case in gold.cases if "other-role" in case.tags)
    assert all(case.history for case in gold.cases if "follow-up" in case.tags)


def test_the_holdout_set_covers_every_holdout_role_and_every_kind_of_case():
    gold = load_gold_set("holdout")
    assert len(gold.cases) >= 40
    roles = set().union(*(HOLDOUT.roles_of_user.get(c.user, set(c.roles)) for c in gold.cases))
    assert roles == set(holdout.role_names())
    tags = {tag for case in gold.cases for tag in case.tags}
    assert tags >= {
        "out-of-scope",
        "other-role",
        "near-duplicate",
        "identifier",
        "follow-up",
        "table",
    }
    answerable = [case for case in gold.cases if not case.not_found]
    assert len(answerable) >= 30 and len(gold.cases) - len(answerable) >= 10
    assert sum(len(case.cite) > 1 for case in answerable) >= 2  # either document will do
    assert all(case.never for case in gold.cases if "other-role" in case.tags)
    assert all(case.history for case in gold.cases if "follow-up" in case.tags)


def test_the_paraphrase_set_asks_the_demo_facts_in_new_words():
    gold = load_gold_set("demo-paraphrase")
    assert len(gold.cases) >= 34
    roles = set().union(*(ROLES_OF_USER.get(c.user, set(c.roles)) for c in gold.cases))
    assert roles == set(demo.role_names())
    tuned = {
        _words(c.question) for name in ("demo", "demo-extended") for c in load_gold_set(name).cases
    }
    assert not [c.id for c in gold.cases if _words(c.question) in tuned]
    reported = {  # asked by users, answered wrongly before
        ("omar_ops", "What tyre pressure does the main landing gear need?"),
        ("alice_finance", "How much revenue did Veluna Air make in the third quarter of 2024?"),
        ("eve_employee", "Which number do I dial for the IT helpdesk?"),
        ("eve_employee", "What's the nightly hotel limit for domestic business travel?"),
    }
    assert reported <= {(c.user, c.question) for c in gold.cases if not c.history}
    assert sum(case.not_found for case in gold.cases) >= 6
    assert all(case.never for case in gold.cases)


def test_no_holdout_document_shares_a_sentence_or_a_figure_with_the_demo():
    demo_text = "\n".join(DEMO.text_of_file.values())
    for filename, text in HOLDOUT.text_of_file.items():
        shared = _sentences(text) & _sentences(demo_text)
        shared |= _figure_lines(text) & _figure_lines(demo_text)
        shared |= _figures(text) & _figures(demo_text)
        assert not shared, f"{filename} repeats the demo: {sorted(shared)[:3]}"
        assert "veluna" not in text.lower(), filename


def test_the_overlap_checks_can_fail():
    travel = DEMO.text_of_file["travel-and-expenses-policy.docx"]
    assert "| Domestic | €45 | €22 | €140 |" in _figure_lines(travel)
    assert "0.32" in _figures(travel) and not _figures("per 100 ml from 1 May 2024")
    sentence = "Request leave in the PeopleHub app at least two weeks ahead."
    assert _words(sentence) in _sentences(DEMO.text_of_file["employee-handbook.md"])


def _words(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", text).lower().split())


def _sentences(text: str) -> set[str]:
    """Sentences of five words or more, case and spacing ignored (HTML tags dropped)."""
    pieces = re.split(r"(?<=[.!?:;])\s+|\n+", re.sub(r"<[^>]+>", "\n", text))
    return {_words(p) for p in pieces if len(p.split()) >= 5}


def _figures(text: str) -> set[str]:
    """Figures of three digits or more, without years (both workspaces are dated 2023-26)
    and round hundreds ("per 100 ml")."""
    found = re.findall(r"\d[\d,.]*\d", text)
    return {
        f
        for f in found
        if sum(c.isdigit() for c in f) >= 3 and not re.fullmatch(r"20\d\d|[1-9]00", f)
    }


def _figure_lines(text: str) -> set[str]:
    """Lines (table rows, bullets, paragraphs) that carry a figure, markup stripped."""
    lines = (
        line.strip().strip("-*").strip() for line in re.sub(r"<[^>]+>", "\n", text).splitlines()
    )
    return {line for line in lines if re.search(r"\d", line)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user": "", "roles": []}, "exactly one of `user` or `roles`"),
        ({"expect": {"anyof": ["x"]}}, "`expect` takes"),
        ({"expect": {"regex": "("}}, "does not compile"),
        ({"expect": {}}, "say what a correct answer contains"),
        ({"not_found": True}, "expects no facts"),
        ({"tags": ["typo"]}, "unknown tags"),
        ({"colour": "red"}, "unknown keys"),
    ],
)
def test_a_mistake_in_a_gold_set_is_a_clear_error(change, message):
    case = {"id": "a", "question": "Q?", "user": "u", "expect": {"any_of": ["x"]}, "cite": ["d"]}
    with pytest.raises(GoldSetError, match=message):
        parse_gold_set({"cases": [{**case, **change}]})
    with pytest.raises(GoldSetError, match="used twice"):
        parse_gold_set({"cases": [case, case]})


def test_facts_match_whatever_the_spacing_or_thousands_separator():
    (case,) = parse_gold_set(
        {"cases": [{"id": "a", "question": "Q?", "user": "u", "expect": {"any_of": ["€68,000"]}}]}
    ).cases
    assert case.facts_in("It is €68 000.") and case.facts_in("It is €68000.")
    assert not case.facts_in("It is €6,800.")
