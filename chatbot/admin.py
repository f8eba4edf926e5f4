"""The chat audit trail in the console: conversations, messages, feedback, answer audits.

Everything here is other users' data, so reading it needs the audit permission
(accounts.policy.can_audit), never a Django model permission or is_staff; each list,
detail page and CSV export read is written to the access log. Nothing is added, changed
or deleted from the console: the audit trail stays as it was written.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.access_log import Action, log_access
from accounts.models import Role
from accounts.policy import can_audit, request_actor
from chatbot import services
from chatbot.analytics import day_or_none
from chatbot.models import AnswerAudit, Conversation, Feedback, Message, MessageCitation
from config.csv_export import csv_response
from knowledge.selectors import (
    document_titles_unchecked,
    existing_chunk_ids,
    ready_document_titles_unchecked,
)


def _query_of(request) -> dict:
    return {
        "query": request.GET.urlencode(),
        "filters": {key: request.GET.getlist(key) for key in request.GET},
    }


class _AuditorsReadOnly:
    """Seen only by auditors (accounts.policy), never added, changed or deleted."""

    def has_view_permission(self, request, obj=None):
        return can_audit(request_actor(request))

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedReadOnlyAdmin(_AuditorsReadOnly, admin.ModelAdmin):
    """Read-only, for auditors only, and every read logged.

    ``read_action`` is what a detail read logs; lists always log ``AUDIT_READ``.
    """

    read_action = Action.AUDIT_READ
    read_target_type = ""

    def has_module_permission(self, request):
        return can_audit(request_actor(request))

    def detail_label(self, obj) -> str:
        return str(obj)

    def log_detail_read(self, request, obj) -> None:
        log_access(
            actor=request_actor(request),
            action=self.read_action,
            target_type=self.read_target_type,
            target_id=obj.pk,
            target_label=self.detail_label(obj),
        )

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        # Only a rendered list was read (not a redirect, an action's own response or a 403).
        rendered = isinstance(response, TemplateResponse) and response.status_code == 200
        cl = (response.context_data or {}).get("cl") if rendered else None
        if cl is not None:
            for error in (e for spec in cl.filter_specs for e in getattr(spec, "errors", ())):
                messages.error(request, error)
            log_access(
                actor=request_actor(request),
                action=Action.AUDIT_READ,
                target_type=f"{self.read_target_type}_list",
                target_id=None,
                target_label=f"{self.opts.verbose_name_plural} list ({cl.result_count} rows)",
                after={**_query_of(request), "count": cl.result_count},
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        rendered = isinstance(response, TemplateResponse) and response.status_code == 200
        original = (response.context_data or {}).get("original") if rendered else None
        if request.method == "GET" and original is not None:
            self.log_detail_read(request, original)
        return response


class _ReadOnlyInline(_AuditorsReadOnly, admin.TabularInline):
    extra = 0
    can_delete = False


class MessageCitationInline(_ReadOnlyInline):
    model = MessageCitation
    fields = ["index", "title", "cited_document_id", "cited_chunk_id", "score", "snippet"]
    readonly_fields = fields


class MessageInline(_ReadOnlyInline):
    model = Message
    fields = ["role", "text", "model", "fallback_used", "latency_ms", "created_at"]
    readonly_fields = fields
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(AuditedReadOnlyAdmin):
    read_action = Action.CONVERSATION_READ
    read_target_type = "conversation"
    list_display = ["title", "owner", "created_at", "updated_at"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["owner", "title", "created_at", "updated_at"]
    inlines = [MessageInline]
    list_select_related = ["owner"]

    def log_detail_read(self, request, obj) -> None:
        # The same check and log entry as the audit API's conversation read.
        services.conversation_read_for_audit(actor=request_actor(request), conversation_id=obj.pk)


@admin.register(Message)
class MessageAdmin(AuditedReadOnlyAdmin):
    read_action = Action.CONVERSATION_READ
    read_target_type = "message"
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
    list_select_related = ["conversation"]
    readonly_fields = [
        "conversation", "role", "text", "model", "prompt_tokens", "completion_tokens",
        "latency_ms", "fallback_used", "not_found", "scoped_roles", "created_at",
    ]  # fmt: skip
    inlines = [MessageCitationInline]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("conversation__owner")

    def detail_label(self, obj) -> str:
        return f"{obj.conversation.owner.username}: {obj.conversation.title} (message {obj.pk})"


@admin.register(Feedback)
class FeedbackAdmin(AuditedReadOnlyAdmin):
    read_target_type = "feedback"
    list_display = ["message", "user", "rating", "comment", "updated_at"]
    list_filter = ["rating"]
    list_select_related = ["message", "user"]
    readonly_fields = ["message", "user", "rating", "comment", "created_at", "updated_at"]

    def detail_label(self, obj) -> str:
        return f"{obj.user.username}: {obj.rating} on message {obj.message_id}"


# Answer audits


class RoleFilter(admin.SimpleListFilter):
    """Audits whose asker held the role when asking (AnswerAudit.role_ids)."""

    title = "role"
    parameter_name = "role"

    def lookups(self, request, model_admin):
        return [
            (str(pk), name) for pk, name in Role.objects.order_by("name").values_list("pk", "name")
        ]

    def has_output(self):
        return True  # so a role given in the URL always filters, even with no roles listed

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(role_ids__contains=[int(value)])


class DocumentFilter(admin.SimpleListFilter):
    """Audits whose retrieval returned a passage of the document (AnswerAudit.retrieved).

    Lists ready documents only (those someone can search); any id works in the URL, a
    deleted document's included."""

    title = "retrieved document"
    parameter_name = "document"

    def lookups(self, request, model_admin):
        documents = ready_document_titles_unchecked()
        return [(str(pk), f"{title} (#{pk})") for pk, title in documents]

    def has_output(self):
        return True

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(retrieved__contains=[{"document_id": int(value)}])


class InputFilter(admin.ListFilter):
    """A filter typed into a small GET form (the other filters of the list are kept)."""

    template = "admin/chatbot/input_filter.html"
    # (parameter, label, input type)
    inputs: tuple[tuple[str, str, str], ...] = ()

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.errors = []
        for name, _label, _type in self.inputs:
            if name in params:
                value = params.pop(name)[-1].strip()
                if value:
                    self.used_parameters[name] = value
        self.clean()

    def clean(self) -> None:
        pass

    def has_output(self):
        return True

    def expected_parameters(self):
        return [name for name, _label, _type in self.inputs]

    def choices(self, changelist):
        names = self.expected_parameters()
        hidden = [
            (key, value)
            for key, values in changelist.filter_params.items()
            if key not in names
            for value in values
        ]
        yield {
            "inputs": [
                {
                    "name": name,
                    "label": label,
                    "type": kind,
                    "value": self.used_parameters.get(name, ""),
                }
                for name, label, kind in self.inputs
            ],
            "hidden": hidden,
            "selected": bool(self.used_parameters),
            "clear_query_string": changelist.get_query_string(remove=names),
        }


class UsernameFilter(InputFilter):
    title = "user"
    inputs = (("username", "username", "text"),)

    def queryset(self, request, queryset):
        username = self.used_parameters.get("username")
        return queryset.filter(username__iexact=username) if username else queryset


class CreatedRangeFilter(InputFilter):
    """From and to dates (both included, in the console's time zone)."""

    title = "date range"
    inputs = (("created_from", "from", "date"), ("created_to", "to", "date"))

    def clean(self) -> None:
        self.dates = {}
        for name, label, _type in self.inputs:
            raw = self.used_parameters.get(name)
            if raw is None:
                continue
            value = day_or_none(raw)
            if value is None:
                self.errors.append(
                    f'The "{label}" date "{raw}" is not a date (write YYYY-MM-DD); '
                    "it was not applied."
                )
                del self.used_parameters[name]
            else:
                self.dates[name] = value

    def queryset(self, request, queryset):
        tz = timezone.get_current_timezone()

        def start_of(day):
            return timezone.make_aware(datetime.combine(day, time.min), tz)

        if "created_from" in self.dates:
            queryset = queryset.filter(created_at__gte=start_of(self.dates["created_from"]))
        if "created_to" in self.dates:
            end = start_of(self.dates["created_to"] + timedelta(days=1))
            queryset = queryset.filter(created_at__lt=end)
        return queryset


CSV_HEADER = [
    "created_at", "username", "roles", "question", "surface", "channel", "outcome", "model",
    "retrieval_ms",
    "first_token_ms", "total_ms", "fallback_used", "cited_chunk_ids", "shown_chunk_ids",
    "retrieved_document_ids",
]  # fmt: skip


def _ids(values) -> str:
    return " ".join(str(value) for value in values)


def _retrieved_document_ids(retrieved) -> list[int]:
    seen = []
    for hit in retrieved or []:
        document_id = hit.get("document_id") if isinstance(hit, dict) else None
        if document_id is not None and document_id not in seen:
            seen.append(document_id)
    return seen


@admin.register(AnswerAudit)
class AnswerAuditAdmin(AuditedReadOnlyAdmin):
    """The audit trail: viewable and exportable, never added, changed or deleted from here."""

    read_target_type = "answer_audit"
    list_display = [
        "created_at", "username", "surface", "outcome", "model", "total_ms", "short_question",
    ]  # fmt: skip
    list_filter = [
        UsernameFilter, RoleFilter, DocumentFilter, "surface", "outcome", "model",
        "fallback_used", CreatedRangeFilter,
    ]  # fmt: skip
    search_fields = ["username", "question"]
    date_hierarchy = "created_at"
    actions = ["export_selected_csv"]
    fieldsets = [
        (None, {"fields": ["created_at", "user", "username", "roles", "question", "surface",
                           "channel", "outcome", "error", "conversation", "message"]}),
        ("Answer", {"fields": ["model", "fallback_used", "retrieval_ms", "first_token_ms",
                               "total_ms", "prompt_tokens", "completion_tokens"]}),
        ("Passages used", {"fields": ["passages", "cited_passages", "shown_chunk_ids"]}),
    ]  # fmt: skip
    readonly_fields = [
        "created_at", "user", "username", "roles", "question", "surface", "channel",
        "conversation", "message",
        "shown_chunk_ids", "model", "outcome", "error", "retrieval_ms", "first_token_ms",
        "total_ms", "prompt_tokens", "completion_tokens", "fallback_used", "passages",
        "cited_passages",
    ]  # fmt: skip

    def detail_label(self, obj) -> str:
        return f"{obj.username}: {obj.question[:80]}"

    @admin.display(description="question")
    def short_question(self, audit):
        return audit.question[:80]

    @admin.display(description="roles when asked")
    def roles(self, audit):
        names = dict(Role.objects.filter(pk__in=audit.role_ids).values_list("pk", "name"))
        return ", ".join(names.get(pk, f"#{pk} (deleted)") for pk in audit.role_ids) or "–"

    @admin.display(description="retrieved passages (best first)")
    def passages(self, audit):
        hits = [hit for hit in audit.retrieved or [] if isinstance(hit, dict)]
        if not hits:
            return "None: nothing was retrieved."
        titles = document_titles_unchecked(document_ids=_retrieved_document_ids(hits))
        live = existing_chunk_ids(
            chunk_ids=[hit.get("chunk_id") for hit in hits if hit.get("chunk_id")]
        )
        shown = set(audit.shown_chunk_ids)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td><code>{}</code></td></tr>",
            (
                (
                    hit.get("rank", ""),
                    "yes" if hit.get("chunk_id") in shown else "no",
                    titles.get(hit.get("document_id"), "(document deleted)"),
                    hit.get("document_id", ""),
                    hit.get("chunk_id", ""),
                    "current" if hit.get("chunk_id") in live else "replaced or deleted",
                    f"{hit['score']:.4f}" if isinstance(hit.get("score"), (int, float)) else "",
                    (hit.get("content_hash") or "")[:16],
                )
                for hit in hits
            ),
        )
        return format_html(
            '<table class="audit-passages"><thead><tr><th>rank</th><th>shown to the model</th>'
            "<th>document</th><th>document id</th><th>chunk id</th><th>chunk now</th>"
            "<th>score</th><th>content hash</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="cited in the answer")
    def cited_passages(self, audit):
        if audit.message_id is None:
            return "No stored answer."
        citations = MessageCitation.objects.filter(message_id=audit.message_id).order_by("index")
        if not citations:
            return "The answer cites no passage."
        rows = format_html_join(
            "",
            "<tr><td>[{}]</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (c.index, c.title, c.cited_document_id, c.cited_chunk_id, c.snippet)
                for c in citations
            ),
        )
        return format_html(
            '<table class="audit-citations"><thead><tr><th>#</th><th>document</th>'
            "<th>document id</th><th>chunk id</th><th>passage (as cited)</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    # CSV export: the button exports the filtered list, the action the selected rows.

    def get_urls(self):
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_export",
        )
        return [export, *super().get_urls()]

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        cl = self.get_changelist_instance(request)
        errors = [error for spec in cl.filter_specs for error in getattr(spec, "errors", [])]
        if errors:
            return HttpResponseBadRequest(" ".join(errors), content_type="text/plain")
        return self._csv(request, cl.queryset, scope="filtered")

    @admin.action(description="Export the selected answer audits as CSV")
    def export_selected_csv(self, request, queryset):
        return self._csv(request, queryset, scope="selected")

    def _csv(self, request, queryset, *, scope: str):
        count = queryset.count()
        log_access(
            actor=request_actor(request),
            action=Action.AUDIT_READ,
            target_type="answer_audit_export",
            target_id=None,
            target_label=f"answer audits CSV export ({count} {scope} rows)",
            after={**_query_of(request), "scope": scope, "count": count},
        )
        role_names = dict(Role.objects.values_list("pk", "name"))
        audits = queryset.prefetch_related(
            Prefetch("message__citations", queryset=MessageCitation.objects.order_by("index"))
        )

        def rows():
            for audit in audits.iterator(chunk_size=500):
                cited = audit.message.citations.all() if audit.message_id else []
                yield [
                    audit.created_at.isoformat(),
                    audit.username,
                    "; ".join(role_names.get(pk, f"#{pk}") for pk in audit.role_ids),
                    audit.question,
                    audit.surface,
                    audit.channel,
                    audit.outcome,
                    audit.model,
                    audit.retrieval_ms,
                    audit.first_token_ms,
                    audit.total_ms,
                    audit.fallback_used,
                    _ids(c.cited_chunk_id for c in cited),
                    _ids(audit.shown_chunk_ids),
                    _ids(_retrieved_document_ids(audit.retrieved)),
                ]

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return csv_response(filename=f"answer-audits-{stamp}.csv", header=CSV_HEADER, rows=rows())
