"""The chat API: ask (JSON or a text/event-stream), conversations, feedback."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import closing

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from chatbot import selectors, services
from chatbot.models import Conversation, Feedback
from inference.client import InferenceUnavailable
from inference.prompts import QuestionTooLong
from inference.services import TokenEvent

logger = logging.getLogger(__name__)

MODEL_UNAVAILABLE = (
    "The language model is not available right now, so no answer could be written. "
    "Please try again in a minute."
)
ANSWER_FAILED = "Something went wrong while writing the answer. Please try again."


class ModelUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = MODEL_UNAVAILABLE
    default_code = "model_unavailable"


class CitationSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    document_id = serializers.IntegerField()
    title = serializers.CharField()
    chunk_id = serializers.IntegerField()
    snippet = serializers.CharField()


class HistoryCitationSerializer(serializers.Serializer):
    """A citation re-checked on read: an unavailable one carries its number only."""

    index = serializers.IntegerField()
    available = serializers.BooleanField()
    document_id = serializers.IntegerField(required=False)
    title = serializers.CharField(required=False)
    chunk_id = serializers.IntegerField(required=False)
    snippet = serializers.CharField(required=False)

    def to_representation(self, instance):
        return instance.as_dict()


class FeedbackSerializer(serializers.Serializer):
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices)
    comment = serializers.CharField(allow_blank=True, required=False, max_length=4000)


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.ChoiceField(choices=["user", "assistant"])
    text = serializers.CharField()
    created_at = serializers.DateTimeField()
    citations = HistoryCitationSerializer(many=True)
    model = serializers.CharField()
    fallback_used = serializers.BooleanField()
    not_found = serializers.BooleanField()
    redacted = serializers.BooleanField(
        help_text="The answer drew on a document you can no longer see, so its text is hidden."
    )
    scoped_roles = serializers.ListField(child=serializers.CharField())
    feedback = FeedbackSerializer(allow_null=True)


class ConversationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Conversation
        fields = ["id", "title", "created_at", "updated_at"]


class ConversationDetailSerializer(ConversationSerializer):
    messages = MessageSerializer(many=True)

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def chat_event_stream(*, user, question: str, conversation: Conversation | None) -> Iterator[str]:
    """The reply as server-sent events: token*, citations, done; or error (with a message
    fit for the user: never the exception text, which may name internal hosts)."""
    replies = services.chat_reply_stream(user=user, question=question, conversation=conversation)
    try:
        # closing(): when this stream is closed (client gone), close the reply at once too.
        with closing(replies):
            yield from _reply_events(replies)
    except InferenceUnavailable as exc:
        logger.warning("chat: inference unavailable: %s", exc)
        yield sse("error", {"detail": MODEL_UNAVAILABLE, "code": "model_unavailable"})
    except QuestionTooLong:
        yield sse("error", {"detail": _too_long_message(), "code": "question_too_long"})
    except Exception:
        logger.exception("chat: answering failed")
        yield sse("error", {"detail": ANSWER_FAILED, "code": "failed"})


def _reply_events(replies) -> Iterator[str]:
    for event in replies:
        if isinstance(event, TokenEvent):
            yield sse("token", {"text": event.text})
            continue
        yield sse("citations", {"citations": event.citations})
        yield sse(
            "done",
            {
                "conversation_id": event.conversation_id,
                "message_id": event.message_id,
                "answer": event.answer,
                "fallback_used": event.fallback_used,
                "not_found": event.not_found,
                "scoped_roles": event.scoped_roles,
            },
        )


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


def _too_long_message() -> str:
    return (
        f"The question is too long: at most {settings.CHAT_MAX_QUESTION_CHARS} characters, "
        "and it must fit in the model's prompt."
    )


class ChatInputSerializer(serializers.Serializer):
    message = serializers.CharField(
        max_length=settings.CHAT_MAX_QUESTION_CHARS,
        error_messages={
            "max_length": "The question is too long: at most {max_length} characters.",
            "blank": "Ask a question.",
        },
    )
    conversation_id = serializers.IntegerField(required=False, allow_null=True)
    stream = serializers.BooleanField(default=False)


class ChatOutputSerializer(serializers.Serializer):
    conversation_id = serializers.IntegerField()
    message_id = serializers.IntegerField()
    answer = serializers.CharField()
    citations = CitationSerializer(many=True)
    fallback_used = serializers.BooleanField()
    not_found = serializers.BooleanField()
    scoped_roles = serializers.ListField(child=serializers.CharField())


class EventStreamRenderer(BaseRenderer):
    """Lets clients send "Accept: text/event-stream"; an error answered before the stream
    starts (400, 404, 429) then arrives as one `error` event with the HTTP status."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        detail = data.get("detail", "") if isinstance(data, dict) else str(data)
        return sse("error", {"detail": str(detail)}).encode()


class ChatApi(APIView):
    throttle_scope = "chat"
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, EventStreamRenderer]

    @extend_schema(
        request=ChatInputSerializer,
        responses={
            (200, "application/json"): ChatOutputSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description='With "stream": true: server-sent events `token` {text}, '
                "`citations` {citations}, `done` {conversation_id, message_id, answer, "
                "fallback_used, not_found, scoped_roles}, or `error` {detail, code}. The "
                "`done` answer is authoritative (it replaces the streamed text when the "
                "grounding check rejected it).",
            ),
            400: OpenApiResponse(description="Empty or too long question"),
            404: OpenApiResponse(description="conversation_id is not one of yours"),
            429: OpenApiResponse(description="Rate limit"),
            503: OpenApiResponse(description="The language model is unavailable"),
        },
        description="Ask a question; answered only from documents your roles may see. "
        "Give conversation_id to ask a follow-up in one of your conversations.",
    )
    def post(self, request):
        data = ChatInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        conversation = None
        if values.get("conversation_id") is not None:
            conversation = selectors.access_conversation(
                user=request.user, conversation_id=values["conversation_id"]
            )
        if values["stream"]:
            events = chat_event_stream(
                user=request.user, question=values["message"], conversation=conversation
            )
            response = StreamingHttpResponse(
                in_request_thread(events), content_type="text/event-stream"
            )
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"  # proxies must pass tokens on at once
            return response
        try:
            reply = services.chat_reply(
                user=request.user, question=values["message"], conversation=conversation
            )
        except InferenceUnavailable as exc:
            logger.warning("chat: inference unavailable: %s", exc)
            raise ModelUnavailable() from None
        except QuestionTooLong:
            raise ValidationError({"message": [_too_long_message()]}) from None
        return Response(ChatOutputSerializer(reply).data)


class ConversationListApi(ListAPIView):
    serializer_class = ConversationSerializer

    def get_queryset(self):
        return selectors.conversation_list_for_user(user=self.request.user)


class ConversationDetailApi(APIView):
    @extend_schema(responses=ConversationDetailSerializer)
    def get(self, request, conversation_id: int):
        conversation = selectors.access_conversation(
            user=request.user, conversation_id=conversation_id
        )
        messages = selectors.conversation_messages_for_user(
            user=request.user, conversation=conversation
        )
        body = {**ConversationSerializer(conversation).data, "messages": messages}
        return Response(ConversationDetailSerializer(body).data)


class FeedbackOutputSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    rating = serializers.CharField()
    comment = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()


class FeedbackApi(APIView):
    @extend_schema(
        request=FeedbackSerializer,
        responses={201: FeedbackOutputSerializer, 200: FeedbackOutputSerializer},
        description="Rate one of your answers (one rating per answer; posting again replaces it).",
    )
    def post(self, request, message_id: int):
        message = selectors.access_message(user=request.user, message_id=message_id)
        data = FeedbackSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        feedback, created = services.feedback_set(
            user=request.user,
            message=message,
            rating=data.validated_data["rating"],
            comment=data.validated_data.get("comment", ""),
        )
        return Response(
            FeedbackOutputSerializer(feedback).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
