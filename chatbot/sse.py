"""The chat answer as a text/event-stream: events, their transport under ASGI, and the
renderer that lets clients ask for it.

Events: ``token`` {text}*, then ``citations`` {citations}, then ``done`` {the stored
answer}; or ``error`` {detail, code} with a message fit for the user (and, when the model
is unavailable, ``sources``: the passages found, within the asker's roles).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import closing

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer

from accounts.selectors import Scope
from chatbot import services
from chatbot.answering.compose import ModelUnavailable, TokenEvent
from chatbot.failures import EXPECTED_FAILURES, answer_failure
from chatbot.models import Conversation
from chatbot.serializers import ChatDoneSerializer, citations_data
from inference.protocol import server_sent_event

logger = logging.getLogger(__name__)


def chat_event_stream(
    *, user, scope: Scope, question: str, conversation: Conversation | None
) -> Iterator[str]:
    replies = services.chat_reply_stream(
        user=user, scope=scope, question=question, conversation=conversation
    )
    try:
        # closing(): when this stream is closed (client gone), close the reply at once too.
        with closing(replies):
            for event in replies:
                if isinstance(event, TokenEvent):
                    yield server_sent_event({"text": event.text}, event="token")
                    continue
                citations = {"citations": citations_data(event.citations)}
                yield server_sent_event(citations, event="citations")
                yield server_sent_event(ChatDoneSerializer(event).data, event="done")
    except Exception as exc:
        if isinstance(exc, EXPECTED_FAILURES):
            logger.warning("chat: no answer: %s", exc)
        else:
            logger.exception("chat: answering failed")
        failure = answer_failure(exc)
        body = {"detail": failure.detail, "code": failure.code}
        if isinstance(exc, ModelUnavailable):
            body["sources"] = citations_data(exc.sources)  # within the asker's roles
        yield server_sent_event(body, event="error")


async def in_request_thread(iterator: Iterator[str]) -> AsyncIterator[str]:
    """Drive a blocking iterator from the event loop, one item at a time, on the request's
    own thread (thread_sensitive: the same thread and database connection throughout).

    The event loop stays free for other requests. When the client disconnects, Django
    cancels this generator; ``finally`` then closes ``iterator`` on that thread, which
    closes the stream from the inference server and stops the generation.
    """
    step = sync_to_async(next, thread_sensitive=True)
    done = object()
    try:
        while (item := await step(iterator, done)) is not done:
            yield item
    finally:
        await sync_to_async(iterator.close, thread_sensitive=True)()


def event_stream_response(events: Iterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(in_request_thread(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass tokens on at once
    return response


class EventStreamRenderer(BaseRenderer):
    """Lets clients send "Accept: text/event-stream"; an error answered before the stream
    starts (400, 404, 429) then arrives as one `error` event with the HTTP status."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        detail = data.get("detail", "") if isinstance(data, dict) else str(data)
        return server_sent_event({"detail": str(detail)}, event="error").encode()
