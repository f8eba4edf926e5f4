"""Training examples for the answer model, RAFT-style: the product's real prompt with the
gold passage among distractors, and the answer in the product's form as the target.

Pure (no Django): the caller passes the passages, the token counter and the prompt settings
that answering uses (evidence characters, source count, best-last order), so an example is
byte for byte the prompt the model reads at answer time. Distractors are what retrieval puts
beside the gold passage: its near-miss twins (same wording, another qualifier), other
passages of the same document, and passages of other documents. About one example in five
has no gold passage; its target is the not-found answer. The gold passage sits at every
position. A target's figure is copied from its gold passage; an example where that fails is
dropped and counted, never trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chatbot.answering.evidence import select_evidence
from chatbot.answering.prompts import (
    DONT_KNOW,
    NO_SOURCE_MARKER,
    Source,
    TokenCounter,
    Turn,
    build_prompt,
)
from evaluation.finetune.synthetic import Fact, Passage

NOT_FOUND_SHARE = 0.2
FOLLOW_UP_SHARE = 0.08
# The end of a target: the base prompt's stop string, so the model learns to stop.
TARGET_END = "\n\n"
NOT_FOUND_TARGET = f"{NO_SOURCE_MARKER[1:]} {DONT_KNOW}{TARGET_END}"


@dataclass(frozen=True)
class PromptSettings:
    """How answering shows sources (settings.ANSWER_*), so examples match answer time."""

    evidence_chars: int = 480
    max_sources: int = 2
    best_last: bool = True
    budget_tokens: int = 2048


@dataclass(frozen=True)
class Example:
    prompt: str
    target: str  # what the model writes after the prompt's "Answer: ["
    kind: str  # answer, not_found, follow_up
    family: str
    gold_position: int  # 1-based place of the gold passage in the prompt; 0 when absent
    sources: int
    figure: str = ""


@dataclass
class ExampleSet:
    examples: list[Example]
    dropped: Counter = field(default_factory=Counter)  # why examples were not kept

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(e.kind for e in self.examples).items()))

    def write_jsonl(self, path: Path) -> str:
        """Write one example a line; return the file's sha256."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(asdict(e), ensure_ascii=False, sort_keys=True) for e in self.examples]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()


def build_examples(
    passages: Sequence[Passage],
    *,
    count: int,
    seed: int,
    counter: TokenCounter,
    prompt: PromptSettings | None = None,
    families: Iterable[str] | None = None,
) -> ExampleSet:
    """``count`` examples over the facts of ``passages`` (only those whose template family
    is in ``families``, when given), every fact used before any is used twice."""
    prompt = prompt or PromptSettings()
    rng = random.Random(seed)
    wanted = set(families) if families is not None else None
    pairs = [
        (passage, fact)
        for passage in passages
        for fact in passage.facts
        if wanted is None or fact.family.split(":")[0] in wanted
    ]
    if not pairs:
        return ExampleSet([])
    pool = _Pool(passages)
    result = ExampleSet([])
    order: list[tuple[Passage, Fact]] = []
    while len(result.examples) < count and (order or pairs):
        if not order:
            order = rng.sample(pairs, len(pairs))
        passage, fact = order.pop()
        example, problem = _example(passage, fact, pool=pool, rng=rng, counter=counter, p=prompt)
        if example is None:
            result.dropped[problem] += 1
            if sum(result.dropped.values()) > 10 * count:
                break
            continue
        result.examples.append(example)
    return result


class _Pool:
    def __init__(self, passages: Sequence[Passage]):
        self.passages = list(passages)
        self.twins: dict[str, list[Passage]] = defaultdict(list)
        self.documents: dict[str, list[Passage]] = defaultdict(list)
        for passage in passages:
            self.twins[passage.twin_group].append(passage)
            self.documents[passage.title].append(passage)

    def distractors(self, gold: Passage, rng: random.Random, n: int) -> list[Passage]:
        twins = [p for p in self.twins[gold.twin_group] if p.key != gold.key]
        same_document = [
            p for p in self.documents[gold.title] if p.key != gold.key and p not in twins
        ]
        chosen: list[Passage] = []
        # Twins first (what retrieval ranks next to the gold), then the same document.
        for group in (twins, same_document):
            rng.shuffle(group)
            for passage in group:
                if len(chosen) < n and rng.random() < 0.8:
                    chosen.append(passage)
        while len(chosen) < n:
            passage = rng.choice(self.passages)
            if passage.key != gold.key and passage not in chosen:
                chosen.append(passage)
        return chosen


def _example(
    gold: Passage,
    fact: Fact,
    *,
    pool: _Pool,
    rng: random.Random,
    counter: TokenCounter,
    p: PromptSettings,
) -> tuple[Example | None, str]:
    sources_n = rng.choices([1, 2, 3], weights=[1, 7, 2])[0]
    sources_n = min(max(sources_n, 1), max(p.max_sources, 1) + 1)
    not_found = rng.random() < NOT_FOUND_SHARE
    history: list[Turn] = []
    question = fact.question
    kind = "not_found" if not_found else "answer"
    if not not_found and rng.random() < FOLLOW_UP_SHARE:
        earlier = [f for f in gold.facts if f.figure != fact.figure and f.family != fact.family]
        if earlier:
            first = rng.choice(earlier)
            history = [Turn("user", first.question), Turn("assistant", first.answer)]
            kind = "follow_up"
    distractors = pool.distractors(gold, rng, sources_n if not_found else sources_n - 1)
    shown = list(distractors)
    gold_position = 0
    if not not_found:
        gold_position = rng.randrange(len(shown) + 1)
        shown.insert(gold_position, gold)
        if fact.figure in "".join(d.text for d in distractors) and _twin_holds(fact, distractors):
            return None, "a distractor states the same fact"
    elif any(fact.figure in d.text and _twin_holds(fact, [d]) for d in distractors):
        return None, "a not-found example whose sources hold the answer"
    sources = [
        Source(
            index=index,
            title=passage.title,
            text=select_evidence(question=question, text=passage.text, max_chars=p.evidence_chars)
            if p.evidence_chars
            else passage.text,
            chunk_id=index,
        )
        for index, passage in enumerate(shown, start=1)
    ]
    built = build_prompt(
        question=question,
        sources=sources,
        history=history,
        kind="base",
        counter=counter,
        budget_tokens=p.budget_tokens,
        best_last=p.best_last,
    )
    if len(built.sources) < len(sources):
        return None, "the sources do not fit the prompt budget"
    if not_found:
        target = NOT_FOUND_TARGET
    else:
        shown_text = built.sources[gold_position].text
        if fact.figure not in shown_text:
            return None, "evidence selection cut the answer's figure"
        if fact.figure not in fact.answer:
            return None, "the answer does not copy its figure"
        target = f"{gold_position + 1}] {fact.answer}{TARGET_END}"
    return (
        Example(
            prompt=built.text,
            target=target,
            kind=kind,
            family=fact.family,
            gold_position=0 if not_found else gold_position + 1,
            sources=len(sources),
            figure="" if not_found else fact.figure,
        ),
        "",
    )


def _twin_holds(fact: Fact, passages: Sequence[Passage]) -> bool:
    """Whether another passage answers the same question (the same wording asked of it)."""
    return any(
        other.question == fact.question and other.figure == fact.figure
        for passage in passages
        for other in passage.facts
    )
