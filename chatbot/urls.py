from django.urls import path

from chatbot import apis

urlpatterns = [
    path("chat/", apis.ChatApi.as_view(), name="chat"),
    path("conversations/", apis.ConversationListApi.as_view(), name="conversation-list"),
    path(
        "conversations/<int:conversation_id>/",
        apis.ConversationDetailApi.as_view(),
        name="conversation-detail",
    ),
    path(
        "audit/conversations/<int:conversation_id>/",
        apis.AuditConversationApi.as_view(),
        name="audit-conversation",
    ),
    path(
        "messages/<int:message_id>/feedback/", apis.FeedbackApi.as_view(), name="message-feedback"
    ),
]
