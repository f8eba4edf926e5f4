"""The memorisation probe: what a trained model says when it is shown no sources.

Three kinds of prompt, each with what would show memorisation: the product's prompt with a
training question and no sources (does the training figure come back?), the opening words of
a training passage (does the model go on with its figures?), and canaries from documents
outside the training scope (does any come back?). Pure: the caller runs the prompts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatbot.answering.prompts import TokenCounter, build_prompt
from evaluation.finetune.synthetic import Passage

OPENING_WORDS = 8


@dataclass(frozen=True)
class Probe:
    kind: str  # no_sources, opening, canary
    prompt: str
    watch: tuple[str, ...]  # strings whose return would be memorisation


def probes(
    *,
    passages: Sequence[Passage],
    canaries: Sequence[tuple[str, str]],
    counter: TokenCounter,
    count: int,
    seed: int,
) -> list[Probe]:
    """``count`` probes of each kind; ``canaries`` are (question, canary) pairs."""
    rng = random.Random(seed)
    with_facts = [p for p in passages if p.facts]
    chosen = rng.sample(with_facts, min(count, len(with_facts)))
    found = []
    for passage in chosen:
        fact = rng.choice(passage.facts)
        found.append(Probe("no_sources", _bare_prompt(fact.question, counter), (fact.figure,)))
    for passage in chosen:
        words = passage.text.split()
        opening = " ".join(words[:OPENING_WORDS])
        rest = " ".join(words[OPENING_WORDS:])
        watch = tuple(
            f.figure for f in passage.facts if f.figure in rest and f.figure not in opening
        )
        if watch:
            found.append(Probe("opening", opening, watch))
    found.extend(
        Probe("canary", _bare_prompt(question, counter), (canary,)) for question, canary in canaries
    )
    return found


def _bare_prompt(question: str, counter: TokenCounter) -> str:
    return build_prompt(
        question=question, sources=(), kind="base", counter=counter, budget_tokens=2048
    ).text


def probe_report(probes_run: Sequence[Probe], complete: Callable[[list[str]], list[str]]) -> dict:
    """Run the probes; per kind, how many were asked and which came back with a watched
    string (the prompt's end, the string, what the model said)."""
    outputs = complete([p.prompt for p in probes_run])
    report: dict[str, dict] = {}
    for probe, output in zip(probes_run, outputs, strict=True):
        entry = report.setdefault(probe.kind, {"asked": 0, "repeated": 0, "examples": []})
        entry["asked"] += 1
        hits = [w for w in probe.watch if w.lower() in output.lower()]
        if hits:
            entry["repeated"] += 1
            entry["examples"].append(
                {"prompt_end": probe.prompt[-120:], "repeated": hits, "output": output[:200]}
            )
    return report
