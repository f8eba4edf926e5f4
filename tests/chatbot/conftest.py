import json
import warnings

import pytest

from chatbot.models import Conversation, Message, MessageCitation
from tests import factories

CLOSED_PORT_URL = "http://127.0.0.1:9"


@pytest.fixture
def traveller():
    """A user whose one role sees a travel policy (the hotel cap per city) and a distractor."""
    staff = factories.role("staff")
    factories.travel_policy(roles=[staff])
    factories.indexed_document(
        title="Expense rules",
        text="Receipts must be submitted within 30 days of the trip.",
        roles=[staff],
    )
    return factories.user(roles=[staff])


@pytest.fixture
def model_down(settings):
    """Nothing listens at INFERENCE_URL: any model call fails as InferenceUnavailable."""
    settings.INFERENCE_URL = CLOSED_PORT_URL
    return CLOSED_PORT_URL


def parse_events(response) -> list[tuple[str, dict]]:
    """The server-sent events of a streamed chat response, in order."""
    assert response["Content-Type"].startswith("text/event-stream")
    with warnings.catch_warnings():
        # The test client is not ASGI: it collects the async stream first (uvicorn does not).
        warnings.filterwarnings("ignore", "StreamingHttpResponse must consume asynchronous")
        body = b"".join(response).decode()
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        name = data = None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data = json.loads(line[len("data:") :])
        events.append((name, data))
    return events


def stored_answer(*, owner, document, text="The answer [1].", question="The question?"):
    """A conversation with one cited answer, stored as the chat service stores them."""
    chunk = factories.stored_chunks(document=document)[0]
    conversation = Conversation.objects.create(owner=owner, title=question)
    Message.objects.create(conversation=conversation, role="user", text=question)
    answer = Message.objects.create(
        conversation=conversation, role="assistant", text=text, model="test", scoped_roles=[]
    )
    MessageCitation.objects.create(
        message=answer,
        index=1,
        chunk=chunk,
        cited_chunk_id=chunk.id,
        document=document,
        cited_document_id=document.id,
        title=document.title,
        snippet=chunk.text[:100],
        score=0.03,
    )
    return conversation, answer
