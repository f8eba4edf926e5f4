"""`python manage.py ask --user USERNAME "question"`: answer as the web UI would."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import user_scope
from chatbot import selectors, services
from chatbot.answering.compose import TokenEvent
from chatbot.citations import Citation
from chatbot.failures import EXPECTED_FAILURES, answer_failure


class Command(BaseCommand):
    help = "Ask a question as a user: prints the answer and its numbered sources."

    def add_arguments(self, parser):
        parser.add_argument("question")
        parser.add_argument("--user", required=True, help="username whose roles scope the answer")
        parser.add_argument(
            "--conversation", type=int, help="continue this conversation of the user's"
        )
        parser.add_argument(
            "--stream", action="store_true", help="print the tokens as they are generated"
        )

    def handle(self, *args, question, user, conversation=None, stream=False, **options):
        from django.conf import settings

        try:
            account = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {user!r}.") from None
        question = question.strip()
        if not question:
            raise CommandError("Ask a question.")
        if len(question) > settings.CHAT_MAX_QUESTION_CHARS:
            raise CommandError(
                f"The question is too long: at most {settings.CHAT_MAX_QUESTION_CHARS} characters."
            )
        thread = None
        if conversation is not None:
            try:
                thread = selectors.access_conversation(user=account, conversation_id=conversation)
            except Exception:
                raise CommandError(f"{user} has no conversation {conversation}.") from None
        reply = None
        try:
            for event in services.chat_reply_stream(
                user=account, scope=user_scope(user=account), question=question, conversation=thread
            ):
                if isinstance(event, TokenEvent):
                    if stream:
                        self.stdout.write(event.text, ending="")
                        self.stdout.flush()
                else:
                    reply = event
        except EXPECTED_FAILURES as exc:
            raise CommandError(answer_failure(exc).detail) from None
        if stream:
            self.stdout.write("\n")
        self.stdout.write(format_reply(reply))


def format_reply(reply: services.ChatReply) -> str:
    lines = []
    if reply.not_found:
        lines.append("Nothing found: none of the documents your roles can see answer this.")
    else:
        lines.append(reply.answer)
    if reply.fallback_used:
        lines.append(
            "(A quotation from the document: the model's own answer could not be checked "
            "against it, so none is shown.)"
        )
    if reply.citations:
        lines.append("")
        lines.append("Sources:")
        lines.extend(line for c in reply.citations for line in format_citation(c))
    lines.append("")
    roles = ", ".join(reply.scoped_roles) or "none"
    lines.append(f"Scoped to roles: {roles}")
    lines.append(f"Conversation {reply.conversation_id}, message {reply.message_id}")
    return "\n".join(lines)


def format_citation(citation: Citation) -> list[str]:
    if not citation.available:
        return [f"  [{citation.index}] (no longer available to you)"]
    return [
        f"  [{citation.index}] {citation.title} (document {citation.document_id}, "
        f"passage {citation.chunk_id})",
        f"      {citation.snippet}",
    ]
