"""The web chat UI: server-rendered pages; static/chatbot/chat.js asks over the chat API."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from accounts.selectors import user_scope
from chatbot import selectors


@login_required
@ensure_csrf_cookie
def chat_page(request, conversation_id: int | None = None):
    scope = user_scope(user=request.user)
    conversation = None
    messages = []
    if conversation_id is not None:
        conversation = selectors.access_conversation(
            user=request.user, conversation_id=conversation_id
        )
        messages = selectors.conversation_messages_for_user(scope=scope, conversation=conversation)
    return render(
        request,
        "chatbot/chat.html",
        {
            "conversation": conversation,
            "conversations": selectors.conversation_list_for_user(user=request.user)[:100],
            "chat_messages": messages,
            "role_names": list(scope.role_names),
            "max_question_chars": settings.CHAT_MAX_QUESTION_CHARS,
        },
    )
