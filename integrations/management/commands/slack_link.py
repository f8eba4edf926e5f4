from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.policy import operator
from integrations import services
from integrations.models import Workspace


class Command(BaseCommand):
    help = (
        "Link a Slack user to an account (as the server's operator; logged): answers to that "
        "Slack user then use the account's roles. People usually link themselves through the "
        "one-time link the bot sends them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--team", required=True, help="the Slack workspace's team_id")
        parser.add_argument("--slack-user", required=True, help="the Slack user id (U...)")
        parser.add_argument("--username", required=True, help="the account to answer as")

    def handle(self, *args, team, slack_user, username, **options):
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user named {username!r}.")
        workspace = services.workspace_for(platform=Workspace.Platform.SLACK, external_id=team)
        services.identity_link(
            actor=operator(label="slack_link"),
            workspace=workspace,
            external_user_id=slack_user,
            user=user,
        )
        self.stdout.write(f"Slack user {slack_user} in {team} is answered as {username}.")
