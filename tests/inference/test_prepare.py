import json

import pytest

from inference import model_files, prepare


def _fake_convert(calls):
    def convert(out_dir):
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(b"weights" * 100)
        (out_dir / "source.json").write_text(json.dumps({"kind": "base"}))

    return convert


def test_second_call_reuses_the_conversion(tmp_path):
    calls = []
    target = tmp_path / "models" / "m"

    first = prepare.ensure_converted(target=target, convert=_fake_convert(calls))
    second = prepare.ensure_converted(target=target, convert=_fake_convert(calls))

    assert first == second == target
    assert len(calls) == 1
    assert model_files.marker_is_valid(target, verify_checksums=True)


def test_directory_without_marker_is_converted_again(tmp_path):
    calls = []
    target = tmp_path / "m"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"half-written")

    prepare.ensure_converted(target=target, convert=_fake_convert(calls))

    assert len(calls) == 1
    assert (target / "model.safetensors").read_bytes() == b"weights" * 100


def test_truncated_file_invalidates_the_marker(tmp_path):
    calls = []
    target = tmp_path / "m"
    prepare.ensure_converted(target=target, convert=_fake_convert(calls))
    (target / "model.safetensors").write_bytes(b"weights")

    prepare.ensure_converted(target=target, convert=_fake_convert(calls))

    assert len(calls) == 2


def test_interrupted_conversion_leaves_nothing_that_passes_as_prepared(tmp_path):
    target = tmp_path / "m"

    def interrupted(out_dir):
        (out_dir / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare.ensure_converted(target=target, convert=interrupted)

    assert not target.exists()
    assert not list(tmp_path.glob(".m.tmp-*"))
    calls = []
    prepare.ensure_converted(target=target, convert=_fake_convert(calls))
    assert len(calls) == 1 and model_files.marker_is_valid(target)


def test_model_kind_prefers_the_recorded_kind_then_the_chat_template(tmp_path):
    instruct = tmp_path / "instruct"
    instruct.mkdir()
    (instruct / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "tokenizer_config.json").write_text("{}")
    converted = prepare.ensure_converted(target=tmp_path / "c", convert=_fake_convert([]))
    (converted / "chat_template.jinja").write_text("{{ x }}")

    assert model_files.model_kind(instruct) == "instruct"
    assert model_files.model_kind(plain) == "base"
    assert model_files.model_kind(converted) == "base"
    assert model_files.model_kind(plain, forced="instruct") == "instruct"
    assert model_files.model_kind(None) == "base"


def test_inference_model_must_be_a_local_model_directory(tmp_path):
    with pytest.raises(prepare.ModelPreparationError, match="not a local Hugging Face model"):
        prepare.prepared_model_dir(data_dir=tmp_path, override=tmp_path / "nowhere")
    assert model_files.locate_model_dir(data_dir=tmp_path, override=tmp_path / "nowhere") is None


@pytest.mark.model
def test_prepared_tokenizer_keeps_common_words_whole(model_dir):
    # The GGUF's tokenizer, as transformers converts it, splits "the" into "t" + "he",
    # which garbles everything the model writes. The prepared one must not.
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokens = tokenizer.encode("the travel policy", add_special_tokens=False).tokens

    assert tokens == ["the", "▁travel", "▁policy"]
    assert model_files.model_kind(model_dir) == "base"
