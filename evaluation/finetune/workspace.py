"""The organisation's own documents as training passages, within the one scope a shared
adapter may learn from: documents every active user may read (contract item 13).

What a model learns it can repeat to anyone who uses it, so a role that not every active user
holds is refused, naming it and some users without it; only documents carrying one of the
allowed roles are read, and only their chunks whose own allowed roles overlap them. The demo
workspace's and the gold sets' documents are left out by default, so evaluation measures
skill, not memory. Facts are asked of table rows (a row's label and a column's header name
the figure); every passage also serves as a distractor for the others of its document.
"""

from __future__ import annotations

from collections.abc import Iterable

from accounts.selectors import active_users_without_role, roles_held_by_every_active_user
from chatbot.answering.grounding import _blocks, _Table
from evaluation.finetune.synthetic import Fact, Passage
from evaluation.gold import available_sets, load_gold_set
from knowledge import demo
from knowledge.selectors import TrainingDocument, documents_for_training_unchecked

QUESTION_FORMS = (
    "What is the {column} for {row}?",
    "What's the {column} of {row}?",
    "{row}: what is the {column}?",
)


class TrainingScopeError(ValueError):
    """A training set was asked to read what not every active user may read."""


def training_role_ids(role_names: Iterable[str]) -> dict[str, int]:
    """The named roles, each held by every active user; TrainingScopeError otherwise."""
    names = sorted({n.strip() for n in role_names if n and n.strip()})
    if not names:
        raise TrainingScopeError("--source workspace needs --roles: roles every user holds.")
    universal = roles_held_by_every_active_user()
    refused = [name for name in names if name not in universal]
    if refused:
        details = "; ".join(
            f"{name!r} (not held by {', '.join(active_users_without_role(role_name=name))})"
            for name in refused
        )
        raise TrainingScopeError(
            f"Refused: an adapter is shared by every user, so it may learn only from documents "
            f"every active user may read. Not held by every active user: {details}."
        )
    return {name: universal[name] for name in names}


def evaluation_document_names() -> set[str]:
    """File names and titles of the demo workspace and of every gold set's cited documents."""
    names = {entry.filename for entry in demo.CATALOGUE} | {e.source for e in demo.CATALOGUE}
    names |= {document.title for document in demo.documents()}
    for name in available_sets():
        names |= {cited for case in load_gold_set(name).cases for cited in case.cite}
    try:
        from evaluation import holdout
    except ImportError:
        holdout = None
    if holdout is not None:
        names |= {entry.filename for entry in holdout.CATALOGUE}
        names |= {document.title for document in holdout.documents()}
    return {name.lower() for name in names}


def workspace_passages(
    *, role_names: Iterable[str], include_evaluation_documents: bool = False
) -> tuple[list[Passage], list[TrainingDocument]]:
    """Passages of the documents every active user may read, and the documents read."""
    role_ids = training_role_ids(role_names)
    documents = documents_for_training_unchecked(role_ids=role_ids.values())
    if not include_evaluation_documents:
        excluded = evaluation_document_names()
        documents = [
            d
            for d in documents
            if d.name.lower() not in excluded and d.title.lower() not in excluded
        ]
    passages = []
    for document in documents:
        for position, (heading, text) in enumerate(document.passages):
            passages.append(
                Passage(
                    key=f"workspace/{document.id}/{position}",
                    company="",
                    title=document.title,
                    heading=heading,
                    text=text,
                    facts=tuple(_table_facts(text)),
                    twin_group=f"workspace/{document.id}",
                    family="workspace",
                )
            )
    return passages, documents


def _table_facts(text: str) -> list[Fact]:
    facts = []
    for block in _blocks(text):
        if not isinstance(block, _Table):
            continue
        for row in block.rows:
            for position, cell in enumerate(row[1:], start=1):
                if position >= len(block.header) or not any(ch.isdigit() for ch in cell):
                    continue
                column = block.header[position].strip()
                label = row[0].strip()
                if not column or not label or cell not in text:
                    continue
                facts.extend(
                    Fact(
                        question=form.format(column=column.lower(), row=label),
                        answer=f"The {column.lower()} for {label} is {cell}.",
                        figure=cell,
                        family="workspace:table",
                    )
                    for form in QUESTION_FORMS
                )
    return facts
