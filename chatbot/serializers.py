"""Output shapes of the chat API, shared by the JSON answer, the event stream and history."""

from __future__ import annotations

from rest_framework import serializers

from chatbot.models import Conversation, Feedback
from config.serializers import StrictSerializer


class CitationSerializer(serializers.Serializer):
    """One numbered source. An unavailable citation (the reader's roles no longer cover it)
    carries its number and ``available: false`` only."""

    index = serializers.IntegerField()
    available = serializers.BooleanField()
    document_id = serializers.IntegerField(required=False)
    title = serializers.CharField(required=False)
    chunk_id = serializers.IntegerField(required=False)
    snippet = serializers.CharField(required=False)

    def to_representation(self, instance):
        if not instance.available:
            return {"index": instance.index, "available": False}
        return {
            "index": instance.index,
            "available": True,
            "document_id": instance.document_id,
            "title": instance.title,
            "chunk_id": instance.chunk_id,
            "snippet": instance.snippet,
        }


def citations_data(citations) -> list[dict]:
    return CitationSerializer(citations, many=True).data


class FeedbackSerializer(StrictSerializer):
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices)
    comment = serializers.CharField(allow_blank=True, required=False, max_length=4000)


class FeedbackOutputSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    rating = serializers.CharField()
    comment = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.ChoiceField(choices=["user", "assistant"])
    text = serializers.CharField()
    created_at = serializers.DateTimeField()
    citations = CitationSerializer(many=True)
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


class ChatDoneSerializer(serializers.Serializer):
    """The stored answer: the JSON reply, and the `done` event of a stream (without its
    citations, which come in their own `citations` event first)."""

    conversation_id = serializers.IntegerField()
    message_id = serializers.IntegerField()
    answer = serializers.CharField()
    fallback_used = serializers.BooleanField()
    not_found = serializers.BooleanField()
    scoped_roles = serializers.ListField(child=serializers.CharField())


class ChatOutputSerializer(ChatDoneSerializer):
    citations = CitationSerializer(many=True)
