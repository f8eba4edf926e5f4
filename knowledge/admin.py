"""The console's documents: upload, re-scope, replace, re-ingest, delete, and who can see each.

Every permission question is answered by accounts.policy through ``request_actor`` (never
by Django's model permissions), and every change goes through knowledge.services, which
checks the same rule again and writes the access log. The access log is the one record of
these changes, so the admin's own history (LogEntry) is not written for documents.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as stock_delete_selected
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timezone import localtime

from accounts import policy
from accounts.models import AccessLogEntry, Role
from accounts.policy import Actor, ManagementDenied, request_actor
from config.admin import NoAdminHistory
from knowledge import services
from knowledge.access import document_list_for_management
from knowledge.console import document_audience, document_chunk_page
from knowledge.models import Document
from knowledge.selectors import documents_unreachable

TYPE_LABELS = {
    "application/pdf": "PDF",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word",
    "text/html": "HTML",
    "text/markdown": "Markdown",
    "text/plain": "Text",
    "text/csv": "CSV",
}


def roles_actor_may_upload_into(actor: Actor) -> QuerySet[Role]:
    """The role choices of the upload and change forms: every role for a superuser, else
    the roles the actor manages (accounts.policy.can_upload_into)."""
    if actor.is_superuser:
        return Role.objects.order_by("name")
    return Role.objects.filter(pk__in=list(actor.managed_role_ids)).order_by("name")


def _role_ids(document: Document) -> set[int]:
    return {r.pk for r in document.roles.all()}


def _role_names(document: Document) -> str:
    return ", ".join(sorted(r.name for r in document.roles.all())) or "—"


def _may_change(actor: Actor, document: Document) -> bool:
    return policy.can_change_document(actor, role_ids=_role_ids(document))


def _type_label(content_type: str) -> str:
    return TYPE_LABELS.get(content_type, content_type or "—")


# Forms


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A list of uploaded files. Empty files pass: the upload service rejects each with its
    reason, so one bad file does not stop the others."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        clean_one = super().clean
        if isinstance(data, list | tuple):
            if not data:
                clean_one(None, initial)  # "This field is required."
                return []
            return [clean_one(item, initial) for item in data]
        return [clean_one(data, initial)]


class DocumentUploadForm(forms.Form):
    files = MultipleFileField(
        label="Files",
        help_text="Choose one or more files (PDF, Word, HTML, Markdown or text). Each is "
        "stored, then parsed and indexed in the background.",
    )
    title = forms.CharField(
        max_length=255,
        required=False,
        help_text="Only for a single file; several files each take their file name.",
    )
    roles = forms.ModelMultipleChoiceField(
        queryset=Role.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        help_text="Who may retrieve these documents: users holding any of these roles.",
    )

    def __init__(self, *args, roles: QuerySet[Role], **kwargs):
        super().__init__(*args, **kwargs)
        if settings.DATA_UPLOAD_MAX_NUMBER_FILES:
            limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
            self.fields["files"].help_text += f" At most {limit} files at a time."
        self.fields["roles"].queryset = roles
        if not self.is_bound and len(roles) == 1:
            self.initial["roles"] = [roles[0].pk]


class DocumentChangeForm(forms.ModelForm):
    roles = forms.ModelMultipleChoiceField(
        queryset=Role.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        help_text="Who may retrieve this document. A change applies to the next search; "
        "nothing is re-embedded.",
    )
    replace_file = forms.FileField(
        required=False,
        allow_empty_file=True,
        label="Replace file",
        help_text="Optional. The new file is ingested in the background; the current "
        "passages stay searchable until the new ones are ready.",
    )
    actor: Actor | None = None  # set per request by DocumentAdmin.get_form

    class Meta:
        model = Document
        fields = ["title"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "roles" in self.fields and self.actor is not None:
            self.fields["roles"].queryset = roles_actor_may_upload_into(self.actor)


# Filters


class RoleFilter(admin.SimpleListFilter):
    title = "role"
    parameter_name = "role"

    def lookups(self, request, model_admin):
        actor = request_actor(request)
        if actor.is_superuser:
            roles = Role.objects.all()
        else:
            visible = document_list_for_management(actor=actor)
            roles = Role.objects.filter(
                Q(pk__in=list(actor.managed_role_ids)) | Q(documents__in=visible)
            ).distinct()
        return [(str(pk), name) for pk, name in roles.order_by("name").values_list("pk", "name")]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        if self.value() not in {value for value, _ in self.lookup_choices}:
            return queryset.none()
        return queryset.filter(roles__id=int(self.value()))


class ReachFilter(admin.SimpleListFilter):
    title = "reach"
    parameter_name = "reach"

    def lookups(self, request, model_admin):
        return [
            ("unreachable", "No active user can retrieve it"),
            ("reachable", "Some active user can retrieve it"),
        ]

    def queryset(self, request, queryset):
        unreachable = documents_unreachable().values("pk")
        if self.value() == "unreachable":
            return queryset.filter(pk__in=unreachable)
        if self.value() == "reachable":
            return queryset.exclude(pk__in=unreachable)
        return queryset


class TypeFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        types = (
            model_admin.get_queryset(request)
            .order_by("content_type")
            .values_list("content_type", flat=True)
            .distinct()
        )
        return [(t, _type_label(t)) for t in types if t]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(content_type=self.value())


# The document admin


@admin.register(Document)
class DocumentAdmin(NoAdminHistory, admin.ModelAdmin):
    list_display = [
        "title",
        "status_display",
        "roles_display",
        "chunks_display",
        "type_display",
        "size_display",
        "uploaded_by",
        "updated_display",
    ]
    list_display_links = ["title"]
    list_filter = ["status", RoleFilter, TypeFilter, ReachFilter]
    list_select_related = ["uploaded_by"]
    list_per_page = 50
    search_fields = ["title", "original_filename"]
    search_help_text = "Search by title or file name."
    actions = ["reingest_selected", "delete_selected"]
    form = DocumentChangeForm
    change_form_template = "admin/knowledge/document/change_form.html"
    add_form_template = "admin/knowledge/document/upload.html"
    ingestion_fields = ["status_display", "error", "chunk_count", "status_changed_at"]
    file_fields = [
        "original_filename", "type_display", "size_display", "content_hash", "uploaded_by",
        "created_at", "updated_at",
    ]  # fmt: skip
    readonly_fields = [*ingestion_fields, *file_fields]

    # Permissions: accounts.policy, never Django's model permissions.

    def has_module_permission(self, request):
        return request_actor(request).manages_documents

    def has_view_permission(self, request, obj=None):
        actor = request_actor(request)
        if not actor.manages_documents:
            return False
        if obj is None:
            return True
        return policy.can_view_document(
            actor, role_ids=_role_ids(obj), uploaded_by_id=obj.uploaded_by_id
        )

    def has_add_permission(self, request):
        return request_actor(request).manages_documents

    def has_change_permission(self, request, obj=None):
        actor = request_actor(request)
        if obj is None:
            return actor.manages_documents
        return _may_change(actor, obj)

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def get_queryset(self, request):
        return document_list_for_management(actor=request_actor(request))

    # The list

    @admin.display(description="status", ordering="status")
    def status_display(self, document):
        if document.status == Document.Status.FAILED:
            return format_html(
                '<span style="color: var(--error-fg)" title="{}">failed: {}</span>',
                document.error,
                Truncator(document.error or "no reason recorded").chars(60),
            )
        if document.status in (Document.Status.QUEUED, Document.Status.PROCESSING) and (
            document.progress_total
        ):
            return f"{document.status} {document.progress_done}/{document.progress_total}"
        return document.status

    @admin.display(description="roles")
    def roles_display(self, document):
        return _role_names(document)

    @admin.display(description="chunks", ordering="chunk_count")
    def chunks_display(self, document):
        return document.chunk_count

    @admin.display(description="updated", ordering="updated_at")
    def updated_display(self, document):
        return format_html(
            '<span title="{}">{}</span>',
            localtime(document.updated_at).isoformat(timespec="seconds"),
            localtime(document.updated_at).strftime("%Y-%m-%d %H:%M"),
        )

    @admin.display(description="type", ordering="content_type")
    def type_display(self, document):
        return _type_label(document.content_type)

    @admin.display(description="size", ordering="size_bytes")
    def size_display(self, document):
        return filesizeformat(document.size_bytes)

    # Upload: one or many files, each through services.document_upload.

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        actor = request_actor(request)
        roles = roles_actor_may_upload_into(actor)
        if request.method == "POST":
            form = DocumentUploadForm(request.POST, request.FILES, roles=roles)
            if form.is_valid():
                self._upload_each(request, actor, form.cleaned_data)
                return HttpResponseRedirect(reverse("admin:knowledge_document_changelist"))
        else:
            form = DocumentUploadForm(roles=roles)
        adminform = helpers.AdminForm(
            form, [(None, {"fields": ["files", "title", "roles"]})], {}, model_admin=self
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload documents",
            "subtitle": None,
            "adminform": adminform,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + adminform.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "upload_limit": filesizeformat(settings.INGEST_MAX_UPLOAD_BYTES),
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)

    def _upload_each(self, request, actor: Actor, values: dict) -> None:
        files = values["files"]
        if values["title"] and len(files) > 1:
            self.message_user(
                request,
                "The title was not used: several files each take their file name.",
                messages.INFO,
            )
        title = values["title"] if len(files) == 1 else ""
        for file in files:
            name = file.name
            try:
                document, created = services.document_upload(
                    actor=actor, file=file, roles=list(values["roles"]), title=title
                )
            except services.UploadRejected as exc:
                self.message_user(request, f"“{name}” was rejected: {exc}", messages.ERROR)
                continue
            except ManagementDenied as exc:
                self.message_user(request, f"“{name}” was refused: {exc}", messages.ERROR)
                continue
            link = reverse("admin:knowledge_document_change", args=[document.pk])
            if created:
                message = format_html(
                    '“{}” is queued for ingestion as <a href="{}">{}</a>.',
                    name,
                    link,
                    document.title,
                )
                self.message_user(request, message, messages.SUCCESS)
            else:
                message = format_html(
                    '“{}” is already present as <a href="{}">{}</a> (the same file with the '
                    "same roles); nothing new was stored.",
                    name,
                    link,
                    document.title,
                )
                self.message_user(request, message, messages.WARNING)

    # Change: title, roles and an optional new file, through services.document_update.

    def get_fieldsets(self, request, obj=None):
        editable = ["title", "roles"]
        if obj is not None and self.has_change_permission(request, obj):
            editable.append("replace_file")
        return [
            (None, {"fields": editable}),
            ("Ingestion", {"fields": self.ingestion_fields}),
            ("File", {"fields": self.file_fields}),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request_actor(request)})

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ManagementDenied, services.UploadRejected) as exc:
            # Raised by the service in save_model; its transaction rolled back, so nothing
            # changed. Show the reason on the page instead of an error page.
            self.message_user(request, f"Nothing was changed: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        changed = form.changed_data
        values = form.cleaned_data
        services.document_update(
            actor=request_actor(request),
            document=obj,
            roles=list(values["roles"]) if "roles" in changed else None,
            title=values["title"] if "title" in changed else None,
            file=values.get("replace_file"),
        )

    def save_related(self, request, form, formsets, change):
        # The roles were set by services.document_update (with the chunks' allowed_roles).
        pass

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if change and obj is not None:
            actor = request_actor(request)
            context.setdefault("show_save_and_add_another", False)
            context.update(
                audience=document_audience(obj),
                chunk_page=document_chunk_page(obj, page_number=request.GET.get("passages")),
                can_view_as=policy.can_audit(actor),
                access_log_url=self._access_log_url(request, obj),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _access_log_url(self, request, document) -> str | None:
        if not self.admin_site.is_registered(AccessLogEntry):
            return None
        log_admin = self.admin_site.get_model_admin(AccessLogEntry)
        if not log_admin.has_view_permission(request):
            return None
        changelist = reverse("admin:accounts_accesslogentry_changelist")
        return f"{changelist}?target_type=document&target_id={document.pk}"

    # Actions: re-ingest and delete, each document checked and logged by its service.

    def _split_by_change_right(self, request, queryset):
        actor = request_actor(request)
        documents = list(queryset)
        return (
            [d for d in documents if _may_change(actor, d)],
            [d for d in documents if not _may_change(actor, d)],
        )

    def _report_skipped(self, request, skipped) -> None:
        for document in skipped:
            self.message_user(
                request,
                f"Skipped “{document.title}”: you do not manage every one of its roles "
                f"({_role_names(document)}).",
                messages.WARNING,
            )

    @admin.action(permissions=["change"], description="Re-ingest selected documents")
    def reingest_selected(self, request, queryset):
        allowed, skipped = self._split_by_change_right(request, queryset)
        if request.POST.get("post") == "yes":
            self._report_skipped(request, skipped)
            actor = request_actor(request)
            queued = 0
            for document in allowed:
                try:
                    services.document_reingest(actor=actor, document=document)
                except ManagementDenied:
                    self._report_skipped(request, [document])
                    continue
                queued += 1
            if queued:
                self.message_user(
                    request,
                    f"Queued {queued} document{'s' if queued != 1 else ''} for re-ingestion; "
                    "the current passages stay searchable until the new ones are ready.",
                    messages.SUCCESS,
                )
            return None
        if not allowed:
            self._report_skipped(request, skipped)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Re-ingest documents",
            "subtitle": None,
            "opts": self.opts,
            "documents": allowed,
            "skipped": [(d, _role_names(d)) for d in skipped],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/knowledge/document/reingest_confirmation.html", context
        )

    @admin.action(permissions=["delete"], description="Delete selected documents")
    def delete_selected(self, request, queryset):
        allowed, skipped = self._split_by_change_right(request, queryset)
        self._report_skipped(request, skipped)
        if not allowed:
            return None
        return stock_delete_selected(self, request, queryset.filter(pk__in=[d.pk for d in allowed]))

    def get_deleted_objects(self, objs, request):
        documents = list(objs)
        lines = [
            format_html(
                '{}: <a href="{}">{}</a> ({} passages; roles: {})',
                "Document",
                reverse("admin:knowledge_document_change", args=[d.pk]),
                d.title,
                d.chunk_count,
                _role_names(d),
            )
            for d in documents
        ]
        counts = {"documents": len(documents), "passages": sum(d.chunk_count for d in documents)}
        return lines, counts, set(), []

    def delete_model(self, request, obj):
        services.document_delete(actor=request_actor(request), document=obj)

    def delete_queryset(self, request, queryset):
        actor = request_actor(request)
        for document in queryset:
            if not _may_change(actor, document):
                self._report_skipped(request, [document])
                continue
            try:
                services.document_delete(actor=actor, document=document)
            except ManagementDenied:
                self._report_skipped(request, [document])
