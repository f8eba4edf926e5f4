"""Faults injected into the real processes of the module's own stack (tests/faults/stack.py):
each outage answers the user with a clear status and message, and loses nothing stored.

The worker killed mid-document is tested in tests/knowledge/test_pipeline.py
(test_worker_killed_mid_task_never_shows_a_half_index).
"""

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from chatbot.failures import MODEL_UNAVAILABLE
from config.api_errors import DATABASE_UNAVAILABLE
from config.body_limits import STORAGE_FAILED as BODY_NOT_STORED
from knowledge.services import STORAGE_FAILED
from tests.faults.conftest import document_status, upload, wait_for_status
from tests.faults.stack import events

QUESTION = "How much is a hotel night in London?"
MODEL_DOWN = {"detail": MODEL_UNAVAILABLE, "code": "model_unavailable"}


def model_down_event(event) -> dict:
    """The stream's model-down error event, without its sources."""
    name, body = event
    assert name == "error", event
    assert {key: body[key] for key in MODEL_DOWN} == MODEL_DOWN
    return body


def count(stack, table: str) -> int:
    return stack.sql(f"SELECT count(*) FROM {table}")[0][0]


def search(stack, query: str = "hotel night in London") -> httpx.Response:
    with stack.client() as client:
        return client.post("/api/v1/search/", json={"query": query})


def stream_interrupted(client: httpx.Client, then) -> list[tuple[str, dict]]:
    """Asks QUESTION as a stream, calls ``then()`` as soon as the answer is under way (the
    response has started: the server is retrieving or generating; its first text arrives
    only once a whole sentence is checked, often with the end of the answer), and returns
    every event (the stream must end by itself: the client's read timeout fails a hang)."""
    body = {"message": QUESTION, "stream": True}
    with client.stream("POST", "/api/v1/chat/", json=body) as response:
        assert response.status_code == 200
        then()
        return list(events(response))


def test_redis_down_search_chat_keep_working_and_an_upload_is_ingested_once_it_is_back(stack):
    figure = secrets.randbelow(9000) + 1000
    files_before = stack.stored_files()
    stack.stop_redis()
    try:
        with stack.client() as client:
            # The rate limits fail open: search and chat do not depend on Redis.
            found = client.post("/api/v1/search/", json={"query": "hotel night in London"})
            assert found.status_code == 200
            assert "180 EUR" in found.json()["results"][0]["text"]
            answer = client.post("/api/v1/chat/", json={"message": QUESTION})
            assert answer.status_code == 200, answer.text
            assert [c["title"] for c in answer.json()["citations"]] == ["Travel policy"]

            # Sign-in fails closed: its failed-attempt counter cannot be checked.
            login = httpx.post(
                f"{stack.web_url}/api/v1/auth/token/",
                json={"username": stack.username, "password": stack.password},
            )
            assert login.status_code == 503
            assert login.json() == {
                "detail": "Sign-in is temporarily unavailable; try again in a minute."
            }

            # An upload is stored and recorded as queued; nothing can ingest it yet.
            text = f"# Allowances\n\nThe Kestrel field allowance is {figure} EUR per trip.\n"
            uploaded = upload(stack, "allowances.md", text.encode())
            assert uploaded.status_code == 202, uploaded.text
            assert uploaded.json()["status"] == "queued"
            document_id = uploaded.json()["id"]
        assert document_status(stack, document_id) == ("queued", 0)
        assert len(stack.stored_files() - files_before) == 1
    finally:
        stack.start_redis()

    # The worker's beat sweep re-enqueues it once Redis is back: no one uploads it again.
    assert wait_for_status(stack, document_id, "ready", timeout=180) >= 1
    hits = search(stack, "Kestrel field allowance").json()["results"]
    assert f"{figure} EUR" in hits[0]["text"]


def test_model_server_killed_mid_stream_down_and_restarted(stack):
    web_pid = stack.web.pid
    conversations = count(stack, "chatbot_conversation")
    last_audit = stack.sql("SELECT coalesce(max(id), 0) FROM chatbot_answeraudit")[0][0]

    with stack.client(timeout=180) as client:
        # SIGKILL while the answer is written: the stream ends with an error event, no hang.
        after_kill = stream_interrupted(client, then=stack.model.kill)
        model_down_event(after_kill[-1])
        assert {name for name, _ in after_kill} <= {"token", "error"}

        # While it is down: the passages found, with the reason there is no answer.
        refused = client.post("/api/v1/chat/", json={"message": QUESTION})
        assert refused.status_code == 503
        assert refused.json()["detail"] == MODEL_UNAVAILABLE
        assert refused.json()["code"] == "model_unavailable"
        sources = {s["title"]: s for s in refused.json()["sources"]}
        assert "180 EUR" in sources["Travel policy"]["snippet"]
        streamed = client.post("/api/v1/chat/", json={"message": QUESTION, "stream": True})
        (only,) = events(streamed)
        assert model_down_event(only)["sources"] == refused.json()["sources"]

    # Every attempt is audited as unavailable; nothing half-written was kept.
    outcomes = stack.sql(
        "SELECT outcome, message_id FROM chatbot_answeraudit WHERE id > %s ORDER BY id",
        (last_audit,),
    )
    assert outcomes == [("unavailable", None)] * 3
    assert count(stack, "chatbot_conversation") == conversations

    # Back up: the same web process answers again.
    stack.model.start()
    with stack.client(timeout=180) as client:
        answer = client.post("/api/v1/chat/", json={"message": QUESTION})
    assert answer.status_code == 200, answer.text
    assert [c["title"] for c in answer.json()["citations"]] == ["Travel policy"]
    assert stack.web.pid == web_pid and stack.web.running


def test_postgres_stopped_fails_requests_cleanly_and_the_web_recovers_without_restart(stack):
    web_pid = stack.web.pid
    stored = (count(stack, "knowledge_document"), count(stack, "knowledge_chunk"))
    conversations = count(stack, "chatbot_conversation")
    # Several pooled connections, every one of which dies with the server.
    with ThreadPoolExecutor(4) as pool:
        assert {r.status_code for r in pool.map(lambda _: search(stack), range(4))} == {200}

    try:
        with stack.client(timeout=180) as client:
            # In flight: the answer is being written when the database goes away.
            after_stop = stream_interrupted(client, then=stack.stop_postgres)
            assert after_stop[-1] == (
                "error",
                {"detail": DATABASE_UNAVAILABLE, "code": "database_unavailable"},
            )
            # While it is down: a JSON 503 within the pool's timeout, not a hang or a 500.
            started = time.monotonic()
            refused = client.post("/api/v1/search/", json={"query": "hotel"})
            assert refused.status_code == 503
            assert refused.json() == {"detail": DATABASE_UNAVAILABLE}
            assert time.monotonic() - started < 30
    finally:
        stack.start_postgres()

    # The same web process serves again at once: no pooled connection that died is reused.
    for _ in range(6):
        assert search(stack).status_code == 200
    with ThreadPoolExecutor(4) as pool:
        assert {r.status_code for r in pool.map(lambda _: search(stack), range(8))} == {200}
    assert stack.web.pid == web_pid and stack.web.running
    assert (count(stack, "knowledge_document"), count(stack, "knowledge_chunk")) == stored
    assert count(stack, "chatbot_conversation") == conversations


def test_a_full_disk_refuses_an_upload_with_503_and_leaves_no_row_and_no_file(stack):
    tmp_dir = stack.root / "full-disk-tmp"
    tmp_dir.mkdir()
    web, base_url = stack.web_on_a_full_disk(max_file_bytes=64 * 1024, tmp_dir=tmp_dir)
    web.start()
    try:
        documents = count(stack, "knowledge_document")
        files = stack.stored_files()
        line = "The Osprey procedure needs two signatures before any payment is released.\n"
        # 220 KB: read into memory, then the write under MEDIA_ROOT stops at 64 KB.
        text = f"# Osprey\n\n{line * 3000}"
        response = upload(stack, "osprey.md", text.encode(), base_url=base_url)
        # 6 MB: over FILE_UPLOAD_MAX_MEMORY_SIZE (5 MB), so Django spools the body to a
        # temporary file before any view runs, and that write fails first.
        large = upload(stack, "osprey-large.md", (line * 84000).encode(), base_url=base_url)
    finally:
        web.stop()

    assert response.status_code == 503, response.text
    assert response.json() == {"detail": STORAGE_FAILED}
    assert large.status_code == 503, large.text
    assert large.json() == {"detail": BODY_NOT_STORED}
    assert count(stack, "knowledge_document") == documents
    assert stack.stored_files() == files
    assert list(tmp_dir.iterdir()) == []
