from django.contrib import admin

from chatbot.models import AnswerAudit, Conversation, Feedback, Message, MessageCitation


class MessageCitationInline(admin.TabularInline):
    model = MessageCitation
    extra = 0
    can_delete = False
    fields = ["index", "title", "cited_document_id", "cited_chunk_id", "score", "snippet"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["role", "text", "model", "fallback_used", "latency_ms", "created_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "created_at", "updated_at"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["owner", "title", "created_at", "updated_at"]
    inlines = [MessageInline]
    list_select_related = ["owner"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "conversation",
        "role",
        "model",
        "fallback_used",
        "latency_ms",
        "created_at",
    ]
    list_filter = ["role", "fallback_used", "not_found"]
    search_fields = ["text"]
    readonly_fields = [
        "conversation", "role", "text", "model", "prompt_tokens", "completion_tokens",
        "latency_ms", "fallback_used", "not_found", "scoped_roles", "created_at",
    ]  # fmt: skip
    inlines = [MessageCitationInline]

    def has_add_permission(self, request):
        return False


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["message", "user", "rating", "comment", "updated_at"]
    list_filter = ["rating"]
    readonly_fields = ["message", "user", "rating", "comment", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False


@admin.register(AnswerAudit)
class AnswerAuditAdmin(admin.ModelAdmin):
    """The audit trail: viewable, never added, changed or deleted from here."""

    list_display = ["created_at", "username", "outcome", "model", "total_ms", "short_question"]
    list_filter = ["outcome", "model", "fallback_used"]
    search_fields = ["username", "question"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "created_at", "user", "username", "role_ids", "question", "conversation", "message",
        "retrieved", "shown_chunk_ids", "model", "outcome", "error", "retrieval_ms",
        "first_token_ms", "total_ms", "prompt_tokens", "completion_tokens", "fallback_used",
    ]  # fmt: skip

    @admin.display(description="question")
    def short_question(self, audit):
        return audit.question[:80]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
