"""Gold sets: questions with the facts a right answer holds, read from YAML files.

Pure (no Django). A set lives in ``evaluation/sets/<name>.yaml``::

    name: demo
    k: 5                       # hit@k for retrieval
    cases:
      - id: meal-per-diem-domestic
        question: What is the daily meal per diem for domestic travel?
        user: eve_employee     # who asks: a username, or `roles: [everyone, finance]`
        expect:                # facts a correct answer contains (case-insensitive):
          any_of: ["€45", "45 euros"]   # at least one of these strings, and/or
          regex: '\\b45\\b'            # a regular expression
        cite: [travel-and-expenses-policy.docx]  # documents holding the answer (file names
                                                 # or titles); citing one is enough
        never: ["€48.7 million"]  # canaries: strings from documents outside the scope
        not_found: false       # true: the right answer is the not-found answer
        history:               # earlier turns, for follow-ups
          - {user: "...", assistant: "..."}
        tags: [identifier]

Errors: GoldSetError with the file, the case and what is wrong, so a typo in a set fails
loudly instead of scoring a case as wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SETS_DIR = Path(__file__).resolve().parent / "sets"
DEFAULT_SET = "demo"
DEFAULT_K = 5
TAGS = frozenset(
    (
        "in-scope",
        "out-of-scope",
        "other-role",
        "near-duplicate",
        "identifier",
        "follow-up",
        "injection",
        "table",
        "multi-document",
    )
)


class GoldSetError(ValueError):
    pass


@dataclass(frozen=True)
class GoldCase:
    id: str
    question: str
    user: str = ""
    roles: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    regex: str = ""
    cite: tuple[str, ...] = ()
    never: tuple[str, ...] = ()
    not_found: bool = False
    history: tuple[tuple[str, str], ...] = ()  # (role, content) pairs, oldest first
    tags: tuple[str, ...] = ()

    @property
    def asker(self) -> str:
        return self.user or "roles: " + ", ".join(self.roles)

    def facts_in(self, text: str) -> bool:
        """Whether ``text`` holds the expected facts (every kind given must match)."""
        folded = _fold(text)
        if self.any_of and not any(_fold(fact) in folded for fact in self.any_of):
            return False
        if self.regex and not re.search(self.regex, text, re.IGNORECASE):
            return False
        return bool(self.any_of or self.regex)

    def leaks_in(self, text: str) -> list[str]:
        folded = _fold(text)
        return [canary for canary in self.never if _fold(canary) in folded]


@dataclass(frozen=True)
class GoldSet:
    name: str
    cases: tuple[GoldCase, ...]
    k: int = DEFAULT_K
    source: str = ""  # the file it was read from
    digest: str = field(default="", compare=False)  # sha256 of the file


def available_sets(directory: Path = SETS_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.yaml"))


def load_gold_set(name_or_path: str, *, directory: Path = SETS_DIR) -> GoldSet:
    """A set by name (a file in ``directory``) or by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = directory / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(available_sets(directory)) or "none"
        raise GoldSetError(f"No gold set {name_or_path!r} (known: {known}).")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise GoldSetError(f"{path.name}: not valid YAML: {exc}") from None
    return parse_gold_set(data, source=str(path), digest=_sha256(raw))


def parse_gold_set(data: object, *, source: str = "", digest: str = "") -> GoldSet:
    where = Path(source).name or "gold set"
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise GoldSetError(f"{where}: expected a mapping with a list of `cases`.")
    unknown = set(data) - {"name", "description", "k", "cases"}
    if unknown:
        raise GoldSetError(f"{where}: unknown keys {sorted(unknown)}.")
    k = data.get("k", DEFAULT_K)
    if not isinstance(k, int) or k < 1:
        raise GoldSetError(f"{where}: k must be a positive integer.")
    cases = [_case(item, where=where, position=n) for n, item in enumerate(data["cases"], 1)]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise GoldSetError(f"{where}: case id {case.id!r} is used twice.")
        seen.add(case.id)
    if not cases:
        raise GoldSetError(f"{where}: the set has no cases.")
    name = str(data.get("name") or Path(source).stem or "gold")
    return GoldSet(name=name, cases=tuple(cases), k=k, source=source, digest=digest)


_CASE_KEYS = {
    "id", "question", "user", "roles", "expect", "cite", "never", "not_found", "history", "tags",
}  # fmt: skip


def _case(item: object, *, where: str, position: int) -> GoldCase:
    label = f"{where}, case {position}"
    if not isinstance(item, dict):
        raise GoldSetError(f"{label}: expected a mapping.")
    label = f"{where}, case {item.get('id', position)!r}"
    unknown = set(item) - _CASE_KEYS
    if unknown:
        raise GoldSetError(f"{label}: unknown keys {sorted(unknown)}.")
    case_id = _text(item.get("id"), label, "id")
    question = _text(item.get("question"), label, "question")
    user = str(item.get("user") or "").strip()
    roles = _strings(item.get("roles"), label, "roles")
    if bool(user) == bool(roles):
        raise GoldSetError(f"{label}: say who asks with exactly one of `user` or `roles`.")
    expect = item.get("expect") or {}
    if not isinstance(expect, dict) or set(expect) - {"any_of", "regex"}:
        raise GoldSetError(f"{label}: `expect` takes `any_of` and/or `regex`.")
    any_of = _strings(expect.get("any_of"), label, "expect.any_of")
    regex = str(expect.get("regex") or "")
    if regex:
        try:
            re.compile(regex)
        except re.error as exc:
            raise GoldSetError(f"{label}: expect.regex does not compile: {exc}") from None
    not_found = item.get("not_found", False)
    if not isinstance(not_found, bool):
        raise GoldSetError(f"{label}: not_found must be true or false.")
    cite = _strings(item.get("cite"), label, "cite")
    if not_found and (any_of or regex or cite):
        raise GoldSetError(f"{label}: a not_found case expects no facts and no citations.")
    if not not_found and not (any_of or regex):
        raise GoldSetError(f"{label}: say what a correct answer contains (`expect`).")
    tags = _strings(item.get("tags"), label, "tags")
    if unknown_tags := set(tags) - TAGS:
        raise GoldSetError(f"{label}: unknown tags {sorted(unknown_tags)} (known: {sorted(TAGS)}).")
    return GoldCase(
        id=case_id,
        question=question,
        user=user,
        roles=roles,
        any_of=any_of,
        regex=regex,
        cite=cite,
        never=_strings(item.get("never"), label, "never"),
        not_found=not_found,
        history=_history(item.get("history"), label),
        tags=tags,
    )


def _history(value: object, label: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise GoldSetError(f"{label}: history is a list of {{user, assistant}} turns.")
    turns: list[tuple[str, str]] = []
    for turn in value:
        if not isinstance(turn, dict) or not set(turn) <= {"user", "assistant"} or not turn:
            raise GoldSetError(f"{label}: history is a list of {{user, assistant}} turns.")
        for role in ("user", "assistant"):
            if turn.get(role):
                turns.append((role, str(turn[role])))
    return tuple(turns)


def _text(value: object, label: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GoldSetError(f"{label}: `{key}` must be a non-empty string.")
    return value.strip()


def _strings(value: object, label: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise GoldSetError(f"{label}: `{key}` must be a string or a list of strings.")
    return tuple(v.strip() for v in value)


def _fold(text: str) -> str:
    """Case- and space-insensitive, with thousands separators and non-breaking spaces read
    as the same figure ("€68,000" matches "€68 000" and "€68000")."""
    text = text.replace("\u00a0", " ").replace("\u202f", " ").lower()
    text = re.sub(r"(?<=\d)[,\s](?=\d{3}\b)", "", text)
    return " ".join(text.split())


def _sha256(raw: bytes) -> str:
    import hashlib

    return hashlib.sha256(raw).hexdigest()
