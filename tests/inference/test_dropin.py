"""vLLM (or TGI) behind INFERENCE_URL works without guessing: the model name is asked from
the server, its errors read as it wrote them, extra request fields reach it, the prompt fits
the context it reports. A stand-in answering as vLLM documents plays the server (a real HTTP
server in a thread); the bundled server's own side is tested on its app with a fake engine."""

import logging
import os
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from chatbot.answering.compose import AnswerEvent, TokenEvent, answer_from_hits, configured_kind
from chatbot.answering.prompts import DEFAULT_MAX_ANSWER_TOKENS, prompt_budget
from config.settings import inference_extra_body
from inference import model_files
from inference.client import (
    InferenceClient,
    InferenceError,
    ServerModel,
    forget_server_models,
)
from inference.protocol import parse_params
from tests.chatbot.answering.hits import HOTEL_HITS, Hit
from tests.inference.vllm_standin import SERVED_MODEL, VllmStandin, prompt_token_count

QUESTION = "How much is reimbursed per night for a hotel in London?"
BASE_REPLY = "1] Hotel costs in London are reimbursed up to 180 EUR per night."
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}


@pytest.fixture(autouse=True)
def _servers_asked_afresh():
    forget_server_models()
    model_files._warn_kind_unknown.cache_clear()
    yield
    forget_server_models()


@pytest.fixture
def vllm():
    server = VllmStandin()
    yield server
    server.stop()


@pytest.fixture
def external_server(vllm, settings, tmp_path):
    """The web side as deployed against vLLM: no local model directory, settings unset."""
    settings.INFERENCE_URL = vllm.url
    settings.INFERENCE_MODEL = str(tmp_path)  # holds no model: no tokenizer, no kind
    settings.INFERENCE_MODEL_NAME = ""
    settings.INFERENCE_MODEL_KIND = ""
    settings.INFERENCE_EXTRA_BODY = {}
    return vllm


# --- the model name


def test_the_model_name_is_asked_from_the_server_once_and_sent(vllm):
    first = InferenceClient(base_url=vllm.url).generate("Hello", max_tokens=4)
    second = InferenceClient(base_url=f"{vllm.url}/v1/").chat(
        [{"role": "user", "content": "Hello"}], max_tokens=4
    )

    assert first.text == "Hotel costs in London " and first.model == SERVED_MODEL
    assert second.text == "Hotel costs in London "
    assert [body["model"] for _, body in vllm.posted] == [SERVED_MODEL, SERVED_MODEL]
    assert vllm.model_listings == 1


def test_a_configured_model_name_is_sent_verbatim(vllm):
    vllm.model = "chatbot"  # vllm serve ... --served-model-name chatbot

    completion = InferenceClient(base_url=vllm.url, model="chatbot").generate("Hi", max_tokens=2)

    assert completion.text == "Hotel costs "
    assert vllm.bodies("/v1/completions")[0]["model"] == "chatbot"
    assert vllm.model_listings == 0


@pytest.mark.parametrize("legacy_errors", [False, True], ids=["nested-error", "flat-error"])
def test_a_model_the_server_does_not_serve_is_a_clear_error_in_vllms_words(vllm, legacy_errors):
    vllm.legacy_errors = legacy_errors
    client = InferenceClient(base_url=vllm.url, model="default")

    with pytest.raises(InferenceError) as raised:
        client.generate("Hello", max_tokens=4)
    with pytest.raises(InferenceError, match=r"The model `default` does not exist\."):
        list(client.stream_chat([{"role": "user", "content": "Hello"}], max_tokens=4))

    assert raised.value.status_code == 404
    assert (
        str(raised.value)
        == "the inference server answered 404: The model `default` does not exist."
    )
    assert vllm.model_listings == 0, "a configured name is never replaced by a guess"


def test_a_server_restarted_with_another_model_is_asked_again_once(vllm):
    client = InferenceClient(base_url=vllm.url)
    client.generate("Hello", max_tokens=2)
    vllm.model = "Qwen/Qwen3-8B"  # vLLM restarted with another model

    streamed = client.stream("Hello", max_tokens=3)
    text = "".join(streamed)
    again = InferenceClient(base_url=vllm.url).generate("Hello", max_tokens=1)

    assert text == "Hotel costs in " and streamed.completion.model == "Qwen/Qwen3-8B"
    assert [body["model"] for _, body in vllm.posted] == [
        SERVED_MODEL,
        SERVED_MODEL,
        "Qwen/Qwen3-8B",
        "Qwen/Qwen3-8B",
    ]
    assert vllm.model_listings == 2
    assert again.text == "Hotel "


# --- request bodies, answers and errors as vLLM writes them


def test_extra_body_fields_reach_the_server_but_never_replace_what_the_client_sets(vllm):
    extra = {
        **NO_THINKING,
        "top_k": 1,
        "temperature": 0.6,
        "model": "default",
        "messages": [{"role": "user", "content": "forged"}],
        "stream": False,
        "stream_options": {"include_usage": False},
    }
    client = InferenceClient(base_url=vllm.url, extra_body=extra)
    messages = [{"role": "user", "content": "Where do visitors park?"}]

    streamed = client.stream_chat(messages, max_tokens=4)
    text = "".join(streamed)
    plain = client.generate("Visitors park", max_tokens=4)

    chat_body, completion_body = vllm.posted[0][1], vllm.posted[1][1]
    for body in (chat_body, completion_body):
        assert body["chat_template_kwargs"] == {"enable_thinking": False}
        assert body["top_k"] == 1 and body["temperature"] == 0.6
        assert body["model"] == SERVED_MODEL
    assert chat_body["messages"] == messages
    assert chat_body["stream"] is True and chat_body["stream_options"] == {"include_usage": True}
    assert completion_body["prompt"] == "Visitors park" and completion_body["stream"] is False
    assert "stream_options" not in completion_body  # vLLM refuses them without a stream
    assert text == plain.text == "Hotel costs in London "
    assert streamed.completion.completion_tokens == 4


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
def test_streamed_text_usage_and_finish_reason_are_read_from_vllm_chunks(vllm, chat):
    client = InferenceClient(base_url=vllm.url)
    prompt = [{"role": "user", "content": "Hotel in London?"}] if chat else "Hotel in London?"
    start = client.stream_chat if chat else client.stream

    whole = start(prompt, max_tokens=64)
    deltas = list(whole)
    cut = start(prompt, max_tokens=3)
    cut_text = "".join(cut)

    assert "".join(deltas) == vllm.reply and len(deltas) == len(vllm.reply.split()) == 13
    assert whole.completion.text == vllm.reply
    assert whole.completion.finish_reason == "stop"
    assert whole.completion.completion_tokens == 13
    body = vllm.bodies("/v1/chat/completions" if chat else "/v1/completions")[0]
    assert whole.completion.prompt_tokens == prompt_token_count(body, chat=chat) > 0
    assert whole.completion.model == SERVED_MODEL
    assert cut_text == "Hotel costs in " and cut.completion.finish_reason == "length"


def test_a_bad_request_reaches_the_caller_with_vllms_message(vllm):
    vllm.max_model_len = 64
    client = InferenceClient(base_url=vllm.url)

    with pytest.raises(InferenceError) as plain:
        client.generate("Hello", max_tokens=100)
    with pytest.raises(InferenceError) as streamed:
        list(client.stream("Hello", max_tokens=100))

    for raised in (plain, streamed):
        assert raised.value.status_code == 400
        assert "This model's maximum context length is 64 tokens" in str(raised.value)
    assert vllm.model_listings == 1, "a 400 is not mistaken for a missing model"


def test_the_server_model_tells_its_context_and_no_kind(vllm):
    assert InferenceClient(base_url=vllm.url).server_model() == ServerModel(
        id=SERVED_MODEL, kind=None, max_model_len=4096
    )
    vllm.kind = "instruct"  # what the bundled server adds to its listing
    assert InferenceClient(base_url=vllm.url).server_model().kind is None, "asked once"
    forget_server_models()
    assert InferenceClient(base_url=vllm.url).server_model().kind == "instruct"


# --- the answer path against vLLM


def test_an_answer_through_vllm_uses_its_model_name_extra_body_and_text(external_server, settings):
    settings.INFERENCE_MODEL_KIND = "instruct"
    settings.INFERENCE_EXTRA_BODY = {**NO_THINKING, "top_k": 1}

    events = list(answer_from_hits(question=QUESTION, hits=HOTEL_HITS))

    answer = events[-1].answer
    assert isinstance(events[-1], AnswerEvent)
    (body,) = external_server.bodies("/v1/chat/completions")
    assert body["model"] == SERVED_MODEL
    assert body["chat_template_kwargs"] == {"enable_thinking": False} and body["top_k"] == 1
    assert QUESTION in body["messages"][-1]["content"]
    assert answer.text == external_server.reply and answer.grounded
    streamed = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert streamed.startswith("Hotel costs in London are reimbursed up to 180 EUR per night")
    assert [c.chunk_id for c in answer.citations] == [11]
    assert answer.model == SERVED_MODEL and answer.completion_tokens == 13


def test_with_nothing_telling_the_kind_a_base_prompt_is_sent_and_a_warning_says_what_to_set(
    external_server, caplog
):
    external_server.reply = BASE_REPLY
    caplog.set_level(logging.WARNING, logger="inference.model_files")

    first = list(answer_from_hits(question=QUESTION, hits=HOTEL_HITS))[-1].answer
    list(answer_from_hits(question=QUESTION, hits=HOTEL_HITS))

    assert len(external_server.bodies("/v1/completions")) == 2
    assert external_server.bodies("/v1/chat/completions") == []
    assert "180 EUR per night" in first.text and first.citations[0].chunk_id == 11
    warnings = [r.getMessage() for r in caplog.records if "INFERENCE_MODEL_KIND" in r.getMessage()]
    assert len(warnings) == 1, "warned once per process, not once per answer"


def test_the_kind_comes_from_the_setting_then_the_local_model_then_the_server(settings, tmp_path):
    instruct_dir = tmp_path / "instruct"
    instruct_dir.mkdir()
    (instruct_dir / "config.json").write_text("{}")
    (instruct_dir / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    says_base = ServerModel(id="m", kind="base")
    settings.INFERENCE_MODEL_KIND = ""

    assert configured_kind(None, ServerModel(id="m", kind="instruct")) == "instruct"
    assert configured_kind(instruct_dir, says_base) == "instruct"
    assert configured_kind(None, says_base) == "base"
    settings.INFERENCE_MODEL_KIND = "base"
    assert configured_kind(instruct_dir, ServerModel(id="m", kind="instruct")) == "base"


def test_the_prompt_fits_the_context_the_server_reports(external_server, settings):
    settings.INFERENCE_MODEL_KIND = "base"
    external_server.reply = BASE_REPLY
    external_server.max_model_len = 800  # the stand-in refuses prompt + max_tokens beyond it
    filler = " ".join(
        f"Hotel rule {n}: London hotels are reimbursed per night against receipts."
        for n in range(12)
    )
    long_hits = [
        Hit(hit.chunk_id, hit.document_id, hit.title, f"{hit.text} {filler}") for hit in HOTEL_HITS
    ]

    answer = list(answer_from_hits(question=QUESTION, hits=long_hits))[-1].answer

    (body,) = external_server.bodies("/v1/completions")
    assert prompt_token_count(body, chat=False) <= 800 - DEFAULT_MAX_ANSWER_TOKENS
    assert body["max_tokens"] == DEFAULT_MAX_ANSWER_TOKENS
    assert "180 EUR per night" in answer.text
    # The budget is INFERENCE_PROMPT_BUDGET unless the server's context is smaller.
    assert prompt_budget(2048, max_model_len=None) == 2048
    assert prompt_budget(2048, max_model_len=800) == 800 - DEFAULT_MAX_ANSWER_TOKENS


# --- settings


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"top_k": 1,}', "INFERENCE_EXTRA_BODY is not valid JSON"),
        ('[{"top_k": 1}]', "INFERENCE_EXTRA_BODY must be a JSON object"),
        ("true", "INFERENCE_EXTRA_BODY must be a JSON object"),
        ('{"stream": false, "top_k": 1}', "INFERENCE_EXTRA_BODY may not set stream"),
        ('{"model": "x"}', "INFERENCE_MODEL_NAME"),
    ],
)
def test_a_wrong_inference_extra_body_stops_startup_with_a_clear_message(raw, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        inference_extra_body(raw)


def test_inference_extra_body_reads_a_json_object():
    assert inference_extra_body("") == {}
    assert inference_extra_body(' {"chat_template_kwargs": {"enable_thinking": false}} ') == (
        NO_THINKING
    )


# --- the bundled server's side


def test_the_bundled_server_ignores_request_fields_it_does_not_know():
    params = parse_params({"max_tokens": 5, "top_k": 1, **NO_THINKING, "min_p": 0.1})

    assert params["max_tokens"] == 5 and params["stop"] == ()


@pytest.fixture
def bundled_app(monkeypatch):
    """The bundled server's app, its model "loaded" at once: a fake engine, no weights."""
    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "HF_HUB_OFFLINE"):
        if name in os.environ:  # importing the server adjusts these for its own process
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    from jinja2.exceptions import TemplateError
    from starlette.testclient import TestClient

    from inference import server

    class GemmaChatTemplate:
        def encode_chat(self, messages):
            raise TemplateError(
                "Conversation roles must alternate user/assistant/user/assistant/..."
            )

        def stop(self):
            pass

    def load(state, config):
        state.model_name, state.model_kind, state.max_model_len = "gemma-3-1b-it", "instruct", 32768
        state.engine = GemmaChatTemplate()
        state.status = "ready"

    monkeypatch.setattr(server, "_load", load)
    with TestClient(server.create_app()) as http:
        deadline = time.monotonic() + 5
        while http.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the fake model never became ready"
            time.sleep(0.01)
        yield http


def test_a_chat_template_error_is_a_400_with_the_templates_message(bundled_app):
    response = bundled_app.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi"}],
            "max_tokens": 8,
        },
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Conversation roles must alternate user/assistant/user/assistant/...",
        "type": "invalid_request_error",
    }


def test_the_bundled_server_lists_its_model_with_kind_and_context(bundled_app):
    (entry,) = bundled_app.get("/v1/models").json()["data"]

    assert entry["id"] == "gemma-3-1b-it"
    assert entry["kind"] == "instruct" and entry["max_model_len"] == 32768


@pytest.mark.model
def test_the_real_server_reports_the_default_model_as_base_with_its_context(inference_url):
    served = InferenceClient(base_url=inference_url).server_model()

    assert served == ServerModel(id="gemma3-270m", kind="base", max_model_len=32768)


@pytest.mark.parametrize(
    ("served", "endpoint"),
    [("Qwen/Qwen3-0.6B", "/v1/completions"), ("gemma3-270m", "/v1/chat/completions")],
)
def test_a_local_model_directory_speaks_for_the_server_only_when_it_serves_that_model(
    vllm, settings, tmp_path, monkeypatch, served, endpoint
):
    # An earlier `make run` prepared the packaged model (here: one with a chat template);
    # INFERENCE_URL now points at vLLM serving another model, which tells no kind.
    packaged = tmp_path / "gemma3-270m"
    packaged.mkdir()
    (packaged / "config.json").write_text("{}")
    (packaged / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    monkeypatch.setattr("chatbot.answering.compose.model_dir", lambda: packaged)
    settings.INFERENCE_URL, settings.INFERENCE_MODEL = vllm.url, ""
    settings.INFERENCE_MODEL_NAME = settings.INFERENCE_MODEL_KIND = ""
    settings.INFERENCE_EXTRA_BODY = {}
    vllm.model = served
    vllm.reply = BASE_REPLY

    list(answer_from_hits(question=QUESTION, hits=HOTEL_HITS))

    assert [body["model"] for body in vllm.bodies(endpoint)] == [served]
