from django.urls import path

from chatbot import web

urlpatterns = [
    path("", web.chat_page, name="chat"),
    path("c/<int:conversation_id>/", web.chat_page, name="chat-conversation"),
]
