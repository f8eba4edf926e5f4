"""The web chat UI: server-rendered pages; static/chatbot/chat.js asks over the chat API."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from accounts.models import Role
from accounts.selectors import user_role_ids
from chatbot import selectors


@login_required
@ensure_csrf_cookie
def chat_page(request, conversation_id: int | None = None):
    conversation = None
    messages = []
    if conversation_id is not None:
        conversation = selectors.access_conversation(
            user=request.user, conversation_id=conversation_id
        )
        messages = selectors.conversation_messages_for_user(
            user=request.user, conversation=conversation
        )
    role_names = list(
        Role.objects.filter(pk__in=user_role_ids(user=request.user))
        .order_by("name")
        .values_list("name", flat=True)
    )
    return render(
        request,
        "chatbot/chat.html",
        {
            "conversation": conversation,
            "conversations": selectors.conversation_list_for_user(user=request.user)[:100],
            "chat_messages": messages,
            "role_names": role_names,
            "max_question_chars": settings.CHAT_MAX_QUESTION_CHARS,
        },
    )
