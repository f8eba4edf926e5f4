"""The chat API without the generator: validation, ownership, feedback, history re-checks,
rate limits, and the paths that never call the model (nothing found, model down)."""

import pytest
from django.conf import settings

from accounts.selectors import user_scope
from chatbot.answering.compose import NOT_FOUND_ANSWER
from chatbot.failures import MODEL_UNAVAILABLE
from chatbot.models import AnswerAudit, Conversation, Feedback, Message
from chatbot.selectors import REDACTED_ANSWER, conversation_history_turns
from knowledge import services as knowledge_services
from tests import factories
from tests.chatbot.conftest import parse_events, stored_answer

pytestmark = pytest.mark.django_db

HOTEL_TEXT = (
    "Hotel costs are reimbursed up to 140 EUR per night in Germany and 180 EUR per night "
    "in London. Breakfast is included."
)


@pytest.fixture
def staff_role():
    return factories.role("staff")


@pytest.fixture
def travel_policy(staff_role):
    return factories.indexed_document(title="Travel policy", text=HOTEL_TEXT, roles=[staff_role])


def test_a_question_over_the_length_cap_is_refused_with_400(model_down):
    client = factories.api_client(factories.user())
    too_long = "why " * (settings.CHAT_MAX_QUESTION_CHARS // 4 + 1)

    response = client.post("/api/v1/chat/", {"message": too_long}, format="json")

    assert response.status_code == 400
    assert "too long" in response.json()["detail"]
    assert str(settings.CHAT_MAX_QUESTION_CHARS) in response.json()["detail"]
    assert not Conversation.objects.exists() and not AnswerAudit.objects.exists()


def test_an_empty_question_is_refused_and_anonymous_callers_are_401():
    client = factories.api_client(factories.user())

    assert client.post("/api/v1/chat/", {"message": "  "}, format="json").status_code == 400
    assert factories.api_client().post("/api/v1/chat/", {"message": "hi"}).status_code == 401


def test_nothing_visible_answers_not_found_without_calling_the_model(model_down):
    # model_down: a model call would fail, so a 200 proves the model was not called.
    lonely = factories.user(roles=[factories.role("no-documents")])
    client = factories.api_client(lonely)

    response = client.post("/api/v1/chat/", {"message": "What is the hotel limit?"}, format="json")

    body = response.json()
    assert response.status_code == 200
    assert body["answer"] == NOT_FOUND_ANSWER and body["not_found"] is True
    assert body["citations"] == [] and body["scoped_roles"] == ["no-documents"]
    audit = AnswerAudit.objects.get()
    assert audit.outcome == "not_found" and audit.retrieved == [] and audit.shown_chunk_ids == []
    assert audit.message_id == body["message_id"]

    streamed = parse_events(
        client.post("/api/v1/chat/", {"message": "Hotel?", "stream": True}, format="json")
    )
    # The not-found answer streams like any other answer, then citations (none) and done.
    assert [name for name, _ in streamed] == ["token", "citations", "done"]
    assert streamed[0][1]["text"] == NOT_FOUND_ANSWER
    assert streamed[2][1]["answer"] == NOT_FOUND_ANSWER and streamed[2][1]["not_found"] is True


def test_model_unavailable_is_503_or_an_error_event_and_is_audited(model_down, travel_policy):
    reader = factories.user(roles=travel_policy.roles.all())
    client = factories.api_client(reader)
    question = {"message": "How much for a hotel in London?"}

    response = client.post("/api/v1/chat/", question, format="json")

    assert response.status_code == 503
    assert response.json()["detail"] == MODEL_UNAVAILABLE
    assert "127.0.0.1" not in response.json()["detail"]  # no internal addresses
    assert not Conversation.objects.exists()  # nothing half-written
    chunk_ids = [c.pk for c in factories.stored_chunks(document=travel_policy)]
    # The passages found are still given, so the user can read them instead.
    sources = response.json()["sources"]
    assert sources and {s["chunk_id"] for s in sources} <= set(chunk_ids)
    assert all(s["document_id"] == travel_policy.pk for s in sources)
    streamed = parse_events(client.post("/api/v1/chat/", {**question, "stream": True}))
    assert [name for name, _ in streamed] == ["error"]
    error = streamed[0][1]
    assert (error["detail"], error["code"]) == (MODEL_UNAVAILABLE, "model_unavailable")
    assert error["sources"] == sources
    audits = list(AnswerAudit.objects.order_by("id"))
    assert [a.outcome for a in audits] == ["unavailable", "unavailable"]
    assert [r["chunk_id"] for r in audits[0].retrieved] == chunk_ids
    assert audits[0].message is None and "not reachable" in audits[0].error


def test_conversations_and_answers_are_visible_to_their_owner_only(travel_policy):
    owner = factories.user(roles=travel_policy.roles.all())
    other = factories.user(roles=travel_policy.roles.all())
    conversation, answer = stored_answer(owner=owner, document=travel_policy)
    mine, theirs = factories.api_client(owner), factories.api_client(other)

    assert mine.get(f"/api/v1/conversations/{conversation.id}/").status_code == 200
    assert [c["id"] for c in mine.get("/api/v1/conversations/").json()["results"]] == [
        conversation.id
    ]
    assert theirs.get(f"/api/v1/conversations/{conversation.id}/").status_code == 404
    assert theirs.get("/api/v1/conversations/").json()["results"] == []
    follow_up = {"message": "And in Paris?", "conversation_id": conversation.id}
    assert theirs.post("/api/v1/chat/", follow_up, format="json").status_code == 404
    feedback = theirs.post(f"/api/v1/messages/{answer.id}/feedback/", {"rating": "up"})
    assert feedback.status_code == 404
    assert not Feedback.objects.exists()
    theirs.force_login(other)
    assert theirs.get(f"/c/{conversation.id}/").status_code == 404


def test_feedback_is_one_per_user_and_answer_and_can_be_changed(travel_policy):
    owner = factories.user(roles=travel_policy.roles.all())
    conversation, answer = stored_answer(owner=owner, document=travel_policy)
    client = factories.api_client(owner)
    url = f"/api/v1/messages/{answer.id}/feedback/"

    first = client.post(url, {"rating": "up"}, format="json")
    second = client.post(url, {"rating": "down", "comment": " Too vague "}, format="json")

    assert first.status_code == 201 and first.json()["rating"] == "up"
    assert second.status_code == 200
    assert second.json() == {
        "message_id": answer.id,
        "rating": "down",
        "comment": "Too vague",
        "updated_at": second.json()["updated_at"],
    }
    assert Feedback.objects.get().rating == "down"
    assert client.post(url, {"rating": "meh"}, format="json").status_code == 400
    question = conversation.messages.get(role="user")
    assert (
        client.post(f"/api/v1/messages/{question.id}/feedback/", {"rating": "up"}).status_code
        == 404
    )
    detail = client.get(f"/api/v1/conversations/{conversation.id}/").json()
    assert detail["messages"][1]["feedback"] == {"rating": "down", "comment": "Too vague"}


def test_a_citation_to_a_revoked_document_shows_as_unavailable_without_title_or_text(
    travel_policy, staff_role
):
    reader = factories.user(roles=[staff_role, factories.role("everyone")])
    conversation, _ = stored_answer(
        owner=reader, document=travel_policy, text="Up to 180 EUR per night [1]."
    )
    client = factories.api_client(reader)
    url = f"/api/v1/conversations/{conversation.id}/"

    before = client.get(url).json()["messages"][1]
    assert before["citations"][0]["available"] is True
    assert before["citations"][0]["title"] == "Travel policy"
    assert before["text"] == "Up to 180 EUR per night [1]." and before["redacted"] is False

    reader.roles.remove(staff_role)  # applies to the very next request
    response = client.get(url)

    after = response.json()["messages"][1]
    assert after["citations"] == [{"index": 1, "available": False}]
    assert after["redacted"] is True and after["text"] == REDACTED_ANSWER
    assert "Travel policy" not in response.content.decode()
    # "180 EUR", not "180": a timestamp's microseconds may hold the digits 180.
    assert "180 EUR" not in response.content.decode()
    client.force_login(reader)
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert "Travel policy" not in page and "180 EUR" not in page
    assert "Source no longer available to you" in page
    # The same when the document is re-scoped instead of the user.
    reader.roles.add(staff_role)
    assert client.get(url).json()["messages"][1]["citations"][0]["available"] is True
    knowledge_services.document_set_roles(document=travel_policy, roles=[factories.role("board")])
    assert client.get(url).json()["messages"][1]["citations"] == [{"index": 1, "available": False}]


def test_follow_ups_get_recent_turns_without_answers_the_user_can_no_longer_see(
    travel_policy, staff_role
):
    reader = factories.user(roles=[staff_role])
    conversation, _ = stored_answer(
        owner=reader, document=travel_policy, text="Up to 180 EUR [1].", question="Hotel cap?"
    )
    Message.objects.create(conversation=conversation, role="user", text="And breakfast?")
    Message.objects.create(conversation=conversation, role="assistant", text="It is included.")

    assert conversation_history_turns(scope=user_scope(user=reader), conversation=conversation) == [
        {"role": "user", "content": "Hotel cap?"},
        {"role": "assistant", "content": "Up to 180 EUR [1]."},
        {"role": "user", "content": "And breakfast?"},
        {"role": "assistant", "content": "It is included."},
    ]
    reader.roles.remove(staff_role)
    turns = conversation_history_turns(scope=user_scope(user=reader), conversation=conversation)
    assert "Up to 180 EUR [1]." not in [t["content"] for t in turns]


def test_chat_is_rate_limited_per_user_with_a_clear_429(settings, model_down):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "chat": "2/minute"}
    asker, bystander = factories.user(), factories.user()
    client = factories.api_client(asker)

    codes = [client.post("/api/v1/chat/", {"message": "hi?"}).status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    limited = client.post("/api/v1/chat/", {"message": "hi?"})
    assert limited.json()["detail"].startswith("Too many questions (your limit is 2 per minute).")
    assert int(limited["Retry-After"]) > 0
    assert client.get("/api/v1/conversations/").status_code == 200  # reading is not limited
    assert (
        factories.api_client(bystander).post("/api/v1/chat/", {"message": "hi?"}).status_code == 200
    )


def test_search_is_rate_limited_per_user(settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "search": "2/minute"}
    client = factories.api_client(factories.user(roles=[factories.role()]))

    codes = [client.post("/api/v1/search/", {"query": "hotel"}).status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    detail = client.post("/api/v1/search/", {"query": "hotel"}).json()["detail"]
    assert detail.startswith("Too many searches (your limit is 2 per minute).")


def test_an_event_stream_client_gets_errors_as_an_event():
    client = factories.api_client(factories.user())

    response = client.post(
        "/api/v1/chat/", {"message": ""}, format="json", HTTP_ACCEPT="text/event-stream"
    )

    assert response.status_code == 400
    assert response.content.decode().startswith("event: error\ndata: ")


def test_one_chat_request_reads_the_users_roles_once(model_down, staff_role, travel_policy):
    # History re-checks, retrieval and the audit record share one Scope, so the audit names
    # exactly the role set retrieval used.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    reader = factories.user(roles=[staff_role, factories.role("hr")])
    conversation, _ = stored_answer(owner=reader, document=travel_policy)
    client = factories.api_client(reader)

    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/api/v1/chat/",
            {"message": "What is the hotel limit in London?", "conversation_id": conversation.pk},
            format="json",
        )

    assert response.status_code == 503  # retrieval ran; the model is down
    role_reads = [q["sql"] for q in queries.captured_queries if "accounts_user_roles" in q["sql"]]
    assert len(role_reads) == 1, role_reads
    audit = AnswerAudit.objects.get()
    assert audit.role_ids == sorted(r.pk for r in reader.roles.all())
    assert [entry["document_id"] for entry in audit.retrieved] == [travel_policy.pk]


@pytest.mark.parametrize("page", ["", "0", "-1", "1.5", "abc", "٣", "99"])
def test_a_page_that_is_not_a_positive_integer_or_past_the_end_is_404(page):
    user = factories.user()
    client = factories.api_client(user)

    response = client.get("/api/v1/conversations/", {"page": page})

    assert response.status_code == 404, response.content
    assert response.json()["detail"] == "Invalid page."
    assert client.get("/api/v1/conversations/", {"page": "1"}).status_code == 200
