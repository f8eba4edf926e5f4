"""The chat API: ask (JSON or a text/event-stream), conversations, feedback."""

from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.policy import actor_for
from accounts.selectors import user_scope
from chatbot import selectors, services
from chatbot.answering.compose import ModelUnavailable
from chatbot.failures import EXPECTED_FAILURES, answer_failure
from chatbot.serializers import (
    ChatOutputSerializer,
    ConversationDetailSerializer,
    ConversationSerializer,
    FeedbackOutputSerializer,
    FeedbackSerializer,
    citations_data,
)
from chatbot.sse import EventStreamRenderer, chat_event_stream, event_stream_response
from config.serializers import StrictSerializer

logger = logging.getLogger(__name__)


class ChatInputSerializer(StrictSerializer):
    message = serializers.CharField(
        max_length=settings.CHAT_MAX_QUESTION_CHARS,
        error_messages={
            "max_length": "The question is too long: at most {max_length} characters.",
            "blank": "Ask a question.",
        },
    )
    conversation_id = serializers.IntegerField(required=False, allow_null=True)
    stream = serializers.BooleanField(default=False)


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
            503: OpenApiResponse(
                description="The language model is unavailable ({detail, code, sources}: the "
                "passages found, within your roles), or the database is (Retry-After)"
            ),
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
        ask = {
            "user": request.user,
            "scope": user_scope(user=request.user),
            "question": values["message"],
            "conversation": conversation,
        }
        if values["stream"]:
            return event_stream_response(chat_event_stream(**ask))
        try:
            reply = services.chat_reply(**ask)
        except EXPECTED_FAILURES as exc:
            logger.warning("chat: no answer: %s", exc)
            failure = answer_failure(exc)
            body = {"detail": failure.detail, "code": failure.code}
            if isinstance(exc, ModelUnavailable):
                # The passages found are still worth reading while no answer can be written.
                body["sources"] = citations_data(exc.sources)
            return Response(body, status=failure.status)
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
            scope=user_scope(user=request.user), conversation=conversation
        )
        body = {**ConversationSerializer(conversation).data, "messages": messages}
        return Response(ConversationDetailSerializer(body).data)


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


class AuditConversationApi(APIView):
    class AuditMessageSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        role = serializers.CharField()
        text = serializers.CharField()
        model = serializers.CharField()
        fallback_used = serializers.BooleanField()
        not_found = serializers.BooleanField()
        scoped_roles = serializers.ListField(child=serializers.CharField())
        created_at = serializers.DateTimeField()

    class AuditConversationSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        owner = serializers.CharField(source="owner.username")
        title = serializers.CharField()
        created_at = serializers.DateTimeField()
        messages = serializers.SerializerMethodField()

        def get_messages(self, conversation) -> list[dict]:
            serializer = AuditConversationApi.AuditMessageSerializer
            return serializer(conversation.messages.all(), many=True).data

    @extend_schema(
        responses=AuditConversationSerializer,
        description="Any user's conversation as stored, for holders of the audit permission. "
        "Every read is written to the access log.",
    )
    def get(self, request, conversation_id: int):
        conversation = services.conversation_read_for_audit(
            actor=actor_for(user=request.user), conversation_id=conversation_id
        )
        return Response(self.AuditConversationSerializer(conversation).data)
