"""The gold sets themselves: they load, cover what the issue asks of them, and every case is
true of the demo workspace (a fact the cited document does not hold, or a canary the asker
can see, would score the product against a wrong key)."""

from __future__ import annotations

from importlib import resources

import pytest

from evaluation.gold import GoldSetError, available_sets, load_gold_set, parse_gold_set
from knowledge import demo

ROLES_OF_USER = {spec["username"]: set(spec["roles"]) for spec in demo.USERS}
TEXT_OF_FILE = {
    entry.filename: resources.files(demo).joinpath("content", entry.source).read_text("utf-8")
    for entry in demo.CATALOGUE
}
ROLES_OF_FILE = {entry.filename: set(entry.roles) for entry in demo.CATALOGUE}


def visible_files(case) -> set[str]:
    roles = ROLES_OF_USER[case.user] if case.user else set(case.roles)
    return {name for name, allowed in ROLES_OF_FILE.items() if allowed & roles}


@pytest.mark.parametrize("name", ["demo", "demo-extended"])
def test_every_case_is_true_of_the_demo_workspace(name):
    gold = load_gold_set(name)
    for case in gold.cases:
        assert not case.user or case.user in ROLES_OF_USER, case.id
        visible = visible_files(case)
        assert set(case.cite) <= visible, f"{case.id} cites what its asker cannot see"
        if not case.not_found:
            assert any(case.facts_in(TEXT_OF_FILE[f]) for f in case.cite), case.id
        hidden_text = "\n".join(TEXT_OF_FILE[f] for f in set(TEXT_OF_FILE) - visible)
        visible_text = "\n".join(TEXT_OF_FILE[f] for f in visible)
        for canary in case.never:
            assert canary.lower() not in visible_text.lower(), f"{case.id}: {canary} is visible"
            assert canary.lower() in hidden_text.lower(), f"{case.id}: {canary} is nowhere"


def test_the_demo_set_covers_every_role_and_every_kind_of_case():
    gold = load_gold_set("demo")
    assert len(gold.cases) >= 40 and set(available_sets()) >= {"demo", "demo-extended"}
    roles = set().union(*(ROLES_OF_USER.get(c.user, set(c.roles)) for c in gold.cases))
    assert roles == set(demo.role_names())
    tags = {tag for case in gold.cases for tag in case.tags}
    assert tags >= {
        "out-of-scope", "other-role", "near-duplicate", "identifier", "follow-up", "injection",
    }  # fmt: skip
    assert set(demo.FACTS) <= {case.question for case in gold.cases}
    assert all(case.never for case in gold.cases if "other-role" in case.tags)
    assert all(case.history for case in gold.cases if "follow-up" in case.tags)


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
