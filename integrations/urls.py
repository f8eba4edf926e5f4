from django.urls import path

from integrations import mattermost_views, views, webhook_views

urlpatterns = [
    path("slack/commands/", views.slack_command, name="slack-commands"),
    path("slack/events/", views.slack_event, name="slack-events"),
    path("slack/interactions/", views.slack_interaction, name="slack-interactions"),
    path("link/<str:key>/", views.link_account, name="integration-link"),
    path("webhook/<int:integration_id>/", webhook_views.webhook, name="integration-webhook"),
    path(
        "mattermost/<int:integration_id>/",
        mattermost_views.mattermost_command,
        name="integration-mattermost",
    ),
]
