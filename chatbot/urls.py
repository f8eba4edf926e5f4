from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from chatbot import views, web

api_v1 = [
    path("", include("accounts.urls")),
    path("", include("knowledge.urls")),
    path("", include("chatbot.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("", web.chat_page, name="chat"),
    path("c/<int:conversation_id>/", web.chat_page, name="chat-conversation"),
]

handler404 = "chatbot.exceptions.json_not_found"
handler500 = "chatbot.exceptions.json_server_error"
