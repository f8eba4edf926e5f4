"""The training loop on a tiny configuration with the real model: the loss falls, the
adapter is small, it loads merged into the weights, changes what the model writes, and the
batching engine serving it gives the same tokens as transformers' generate on the merged
model. The server names the adapter in /v1/models."""

from __future__ import annotations

import json
import time

import pytest

from chatbot.answering.prompts import Source, build_prompt
from inference.model_files import SHIPPED_ADAPTER_DIR, adapter_dir_for, served_name

pytestmark = pytest.mark.model

NEW_TOKENS = 16
TARGET = "1] The Harwick depot opens at 05:40 on weekdays.\n\n"


def _prompt(counter, question: str) -> str:
    source = Source(
        index=1, title="Depot guide", text="The Harwick depot opens at 05:40 on weekdays."
    )
    return build_prompt(
        question=question, sources=[source], kind="base", counter=counter, budget_tokens=2048
    ).text


@pytest.fixture(scope="module")
def tiny(model_dir, counter, tmp_path_factory):
    import torch

    from inference import finetune

    examples = [
        (_prompt(counter, q), TARGET)
        for q in ("When does Harwick open?", "What time can I get into the Harwick depot?")
    ]
    tokenizer, model, device = finetune.load_for_training(model_dir, finetune.TrainConfig())
    with torch.no_grad():
        before = [
            float(finetune.target_loss(model, *finetune.encode(tokenizer, p, t), device))
            for p, t in examples
        ]
    del model
    out = tmp_path_factory.mktemp("adapter")
    result = finetune.train(
        model_dir=model_dir,
        examples=examples,
        validation=examples[:1],
        out_dir=out,
        config=finetune.TrainConfig(
            max_steps=8, learning_rate=1e-3, warmup_steps=1, eval_every=4, max_minutes=5
        ),
    )
    return out, examples, before, result


def test_the_training_loss_falls_and_the_best_checkpoint_is_kept(tiny, model_dir):
    out, _examples, before, result = tiny
    assert result.steps == 8 and result.stopped_by == "steps"
    assert [step for step, _ in result.validation] == [4, 8]
    assert result.best_validation_loss == min(v for _, v in result.validation)
    assert result.best_validation_loss < 0.5 * before[0], (before, result.validation)
    weights = out / "adapter_model.safetensors"
    assert (out / "adapter_config.json").is_file()
    assert weights.stat().st_size < 10 * 2**20  # a few MB: committed with the project
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == model_dir.name  # no path of this machine
    assert not (out / "README.md").exists()


def test_the_merged_adapter_changes_the_answer_and_the_engine_serves_it_exactly(
    tiny, model_dir, counter
):
    import torch

    from inference.engine import Engine

    out, *_ = tiny
    prompt = _prompt(counter, "Harwick: when are the doors open?")  # not a training wording
    base = Engine(model_dir=model_dir, max_batch_size=2, draft_tokens=0)
    base.load()
    adapted = Engine(model_dir=model_dir, max_batch_size=2, adapter_dir=out)
    adapted.load()
    try:
        ids = adapted.encode_prompt(prompt)
        base_text = _generate(base, ids)
        adapted_text = _generate(adapted, ids)
        assert adapted_text != base_text
        assert adapted_text.startswith("1]") and "05:40" in adapted_text, adapted_text
        # The engine's own batching and drafts on the merged weights: generate's tokens.
        with torch.no_grad():
            reference = adapted.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
            )[0, len(ids) :].tolist()
        job = adapted.submit(ids, max_tokens=NEW_TOKENS)
        list(job.events())
        end = next((i for i, t in enumerate(reference) if t in adapted.eos_ids), len(reference))
        assert job.token_ids == reference[:end]
    finally:
        base.stop()
        adapted.stop()


def _generate(engine, ids) -> str:
    job = engine.submit(ids, max_tokens=NEW_TOKENS, stop=("\n\n",))
    return "".join(event.text for event in job.events() if hasattr(event, "text"))


def test_the_server_names_the_adapter_it_serves(tiny, model_dir):
    from starlette.testclient import TestClient

    from inference import server

    out, *_ = tiny
    config = server.ServerConfig(model_dir=model_dir, adapter=str(out), draft_tokens=0)
    with TestClient(server.create_app(config)) as http:
        deadline = time.monotonic() + 180
        while http.get("/health").status_code != 200:
            assert http.get("/health").json()["status"] != "failed", http.get("/health").json()
            assert time.monotonic() < deadline
            time.sleep(0.5)
        (entry,) = http.get("/v1/models").json()["data"]
    assert entry["id"] == served_name(model_dir, out) == f"{model_dir.name}+{out.name}"


def test_which_adapter_is_served(tmp_path):
    assert adapter_dir_for("none") is None
    assert adapter_dir_for("NONE") is None
    shipped = (
        SHIPPED_ADAPTER_DIR if (SHIPPED_ADAPTER_DIR / "adapter_config.json").exists() else None
    )
    assert adapter_dir_for("") == shipped
    assert adapter_dir_for("", override_model="/models/other") is None  # not trained for it
    with pytest.raises(ValueError, match="not an adapter directory"):
        adapter_dir_for(str(tmp_path))


def test_the_memorisation_probe_reports_what_the_trained_model_repeats(tiny, model_dir, counter):
    """On a tiny scale: the adapter trained on the Harwick depot's hours, asked with no
    source, and a canary it never saw. What comes back is counted per kind of prompt."""
    from evaluation.finetune.probe import Probe, probe_report, probes
    from evaluation.finetune.synthetic import Fact, Passage
    from inference import finetune

    out, *_ = tiny
    depot = Passage(
        key="depot",
        company="Harwick",
        title="Depot guide",
        heading="",
        text="Opening hours for the Harwick depot on weekdays: it closes at 22:10.",
        facts=(Fact("When does Harwick close?", "It closes at 22:10.", "22:10", "hours"),),
        twin_group="depot",
        family="hours",
    )
    asked = probes(
        passages=[depot],
        canaries=[("What is the Nightjar budget?", "7,777,777")],
        counter=counter,
        count=1,
        seed=0,
    )
    assert [p.kind for p in asked] == ["no_sources", "opening", "canary"]
    report = probe_report(
        asked,
        lambda prompts: finetune.complete(
            model_dir=model_dir, adapter_dir=out, prompts=prompts, max_tokens=12
        ),
    )
    assert {kind: entry["asked"] for kind, entry in report.items()} == {
        "no_sources": 1,
        "opening": 1,
        "canary": 1,
    }
    assert report["canary"]["repeated"] == 0  # never trained on, never said
    # A watched string that comes back is counted and shown.
    echoed = probe_report([Probe("canary", "Say it:", ("7,777,777",))], lambda p: ["7,777,777!"])
    assert echoed["canary"]["repeated"] == 1
    assert echoed["canary"]["examples"][0]["repeated"] == ["7,777,777"]
