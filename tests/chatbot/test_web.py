"""The server-rendered pages, the schema of the chat API, and `ask` without the model."""

import pytest
import yaml
from django.core.management import CommandError, call_command
from openapi_spec_validator import validate

from chatbot.failures import MODEL_UNAVAILABLE
from tests import factories
from tests.chatbot.conftest import stored_answer

pytestmark = pytest.mark.django_db


def test_the_chat_page_needs_a_login_and_the_login_page_is_styled(client):
    assert client.get("/").url == "/accounts/login/?next=/"
    page = client.get("/accounts/login/").content.decode()
    assert "csrfmiddlewaretoken" in page and "/static/chatbot/chat.css" in page
    assert client.get("/static/chatbot/chat.js").status_code == 200


def test_logging_in_shows_the_roles_and_conversations(client):
    reader = factories.user(roles=[factories.role("finance"), factories.role("everyone")])
    document = factories.indexed_document(
        title="Q3 results", text="Revenue grew 12 percent.", roles=reader.roles.all()
    )
    conversation, _ = stored_answer(
        owner=reader, document=document, text="It grew 12 percent [1].", question="Q3 revenue?"
    )

    response = client.post(
        "/accounts/login/", {"username": reader.username, "password": "pw-Secret-123"}
    )
    page = client.get(response.url).content.decode()

    assert response.url == "/"
    assert "everyone" in page and "finance" in page
    assert f'href="/c/{conversation.id}/"' in page and "Q3 revenue?" in page
    assert "csrftoken" in client.cookies
    detail = client.get(f"/c/{conversation.id}/").content.decode()
    assert "It grew 12 percent [1]." in detail and "Q3 results" in detail


def test_the_schema_documents_the_chat_endpoints(client):
    schema = yaml.safe_load(client.get("/api/v1/schema/").content)
    validate(schema)
    for path in [
        "/api/v1/chat/",
        "/api/v1/conversations/",
        "/api/v1/conversations/{conversation_id}/",
        "/api/v1/messages/{message_id}/feedback/",
    ]:
        assert path in schema["paths"]
    chat = schema["paths"]["/api/v1/chat/"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "text/event-stream"} <= set(chat)


def test_ask_without_documents_says_nothing_was_found(model_down, capsys):
    factories.user(roles=[factories.role("empty")], username="nobody-docs")

    call_command("ask", "--user", "nobody-docs", "What is the hotel limit?")

    out = capsys.readouterr().out
    assert out.startswith("Nothing found: none of the documents your roles can see answer this.")
    assert "Scoped to roles: empty" in out


def test_ask_reports_unknown_users_and_an_unavailable_model(model_down):
    role = factories.role("staff")
    factories.indexed_document(title="Travel policy", text="Hotels: 180 EUR.", roles=[role])
    factories.user(roles=[role], username="asker")

    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("ask", "--user", "ghost", "Hi?")
    with pytest.raises(CommandError) as error:
        call_command("ask", "--user", "asker", "Hotel limit?")
    assert str(error.value) == MODEL_UNAVAILABLE
