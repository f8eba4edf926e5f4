"""The console's chat platforms: workspaces, linked identities, and the questions received.

Every permission question is answered by accounts.policy through ``request_actor`` (never
by Django's model permissions or is_staff):

- workspaces: superusers only (policy.can_manage_integrations), since a workspace's channel
  roles open those roles' documents to everyone in a channel; every change goes through
  integrations.services.workspace_update, which checks the rule again and logs it;
- linked identities: unlinking one is managing its user (policy.can_manage_user), through
  integrations.services.identity_unlink, logged for each identity; links are only made by
  the link flow, never here;
- questions: other people's words, so read-only for auditors, every read logged the way
  the chat audit trail's pages log theirs (chatbot.admin.AuditedReadOnlyAdmin).

The access log is the one record of these changes: the admin's own history is not written.
"""

from __future__ import annotations

import secrets

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, F
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from accounts import policy
from accounts.access_log import Action
from accounts.models import Role
from accounts.policy import ManagementDenied, request_actor
from chatbot.admin import AuditedReadOnlyAdmin
from config.admin import NoAdminHistory
from integrations import services
from integrations.models import LinkedIdentity, Question, Workspace

WEBHOOK = Workspace.Platform.WEBHOOK
MATTERMOST = Workspace.Platform.MATTERMOST
# The platforms whose secret is kept here (Slack's signing secrets come from the environment).
SECRET_PLATFORMS = {WEBHOOK, MATTERMOST}
# Shorter secrets are guessable; a generated one (secrets.token_urlsafe(32)) has 43 characters.
MIN_SECRET_LENGTH = 32
# Mattermost generates the slash command's token (26 characters); it is pasted, never made here.
MIN_MATTERMOST_TOKEN_LENGTH = 26


# Workspaces


class WorkspaceForm(forms.ModelForm):
    # Write-only: the stored secret is never rendered back.
    signing_secret = forms.CharField(
        required=False,
        max_length=128,
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = Workspace
        fields = [
            "platform", "external_id", "name", "enabled", "auto_link_by_email",
            "channel_roles", "signing_secret",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        secret = self.fields["signing_secret"]
        if self.instance.pk is None:
            secret.help_text = (
                "Signed webhook: leave blank to have one generated (it is shown once, after "
                "saving). Mattermost: paste the token Mattermost shows for the slash command; "
                "it is never generated here, and until it is pasted the command is refused. "
                "Slack: leave blank (its signing secrets come from the environment)."
            )
        elif self.instance.platform == MATTERMOST:
            secret.help_text = (
                "The slash command's token. Leave blank to keep the current one; after "
                "regenerating it in Mattermost, paste the new one."
            )
        else:
            secret.help_text = "Leave blank to keep the current secret; type one to replace it."
        if "channel_roles" in self.fields:
            self.fields["channel_roles"].queryset = Role.objects.order_by("name")
            self.fields["channel_roles"].help_text = (
                "Answers in a channel draw only on the asker's roles that are also channel "
                "roles: everyone in the channel reads them. None: the bot answers in direct "
                "messages only."
            )

    def clean(self):
        data = super().clean()
        platform = self.instance.platform if self.instance.pk else data.get("platform")
        secret = data.get("signing_secret") or ""
        if secret and platform not in SECRET_PLATFORMS:
            self.add_error(
                "signing_secret",
                "Only signed webhooks and Mattermost have a secret here; Slack's come from the "
                "environment.",
            )
        elif platform == MATTERMOST and secret and len(secret) < MIN_MATTERMOST_TOKEN_LENGTH:
            self.add_error(
                "signing_secret",
                f"Mattermost's tokens have {MIN_MATTERMOST_TOKEN_LENGTH} characters: paste the "
                "whole token of the slash command.",
            )
        elif platform == WEBHOOK and secret and len(secret) < MIN_SECRET_LENGTH:
            self.add_error(
                "signing_secret",
                f"Use at least {MIN_SECRET_LENGTH} characters, or leave it blank to have one "
                "generated.",
            )
        return data


@admin.register(Workspace)
class WorkspaceAdmin(NoAdminHistory, admin.ModelAdmin):
    form = WorkspaceForm
    list_display = [
        "platform", "external_id", "name", "enabled", "auto_link_by_email",
        "channel_role_list", "identity_count", "question_count",
    ]  # fmt: skip
    list_display_links = ["external_id"]
    list_filter = ["platform", "enabled"]
    search_fields = ["external_id", "name"]
    filter_horizontal = ["channel_roles"]
    actions = None  # deleting is one workspace at a time, from its page
    settings_fields = ["name", "enabled", "auto_link_by_email", "channel_roles"]

    # Permissions: superusers only (accounts.policy.can_manage_integrations).

    def _manages(self, request) -> bool:
        return policy.can_manage_integrations(request_actor(request))

    def has_module_permission(self, request):
        return self._manages(request)

    def has_view_permission(self, request, obj=None):
        return self._manages(request)

    def has_add_permission(self, request):
        return self._manages(request)

    def has_change_permission(self, request, obj=None):
        return self._manages(request)

    def has_delete_permission(self, request, obj=None):
        return self._manages(request)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related("channel_roles")
            .annotate(
                identity_total=Count("identities", distinct=True),
                question_total=Count("questions", distinct=True),
            )
        )

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {"title": "Chat workspaces", **(extra_context or {})}
        )

    # The forms

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": ["platform", "external_id", "name", "signing_secret"]}),
                ("Access", {"fields": ["enabled", "auto_link_by_email", "channel_roles"]}),
            ]
        editable = list(self.settings_fields)
        if obj.platform in SECRET_PLATFORMS:
            editable.append("signing_secret")
        return [
            (None, {"fields": ["platform", "external_id", *editable]}),
            ("Activity", {"fields": ["created_at", "identity_count", "question_count"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["platform", "external_id", "created_at", "identity_count", "question_count"]

    # Saving: through integrations.services (checked again there, and logged once).

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ManagementDenied as exc:
            # Raised by the service; the admin's transaction rolled back, so nothing changed.
            self.message_user(request, f"Nothing was changed: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        actor = request_actor(request)
        data = form.cleaned_data
        if change:
            # The form has already written its values onto ``obj``: the service reads the
            # stored row, so the log's "before" is what was there.
            workspace = Workspace.objects.get(pk=obj.pk)
            changes = {n: data[n] for n in self.settings_fields if n in form.changed_data}
            if "channel_roles" in changes:
                changes["channel_roles"] = list(changes["channel_roles"])
            if data.get("signing_secret") and workspace.platform in SECRET_PLATFORMS:
                changes["signing_secret"] = data["signing_secret"]
            if changes:
                services.workspace_update(actor=actor, workspace=workspace, **changes)
            return
        generated = ""
        secret = ""
        if data["platform"] in SECRET_PLATFORMS:
            secret = data.get("signing_secret") or ""
            if not secret and data["platform"] == WEBHOOK:
                secret = generated = secrets.token_urlsafe(32)
        workspace = services.workspace_create(
            actor=actor,
            platform=data["platform"],
            external_id=data["external_id"],
            name=data["name"],
            enabled=data["enabled"],
            auto_link_by_email=data["auto_link_by_email"],
            channel_roles=list(data["channel_roles"]),
            signing_secret=secret,
        )
        obj.pk = obj.id = workspace.pk
        obj._state.adding = False
        if generated:
            self.message_user(
                request,
                format_html(
                    "The signing secret of {} is <code>{}</code>. Copy it now: it is not "
                    "shown again.{}",
                    workspace,
                    generated,
                    _endpoint_sentence(workspace),
                ),
                messages.SUCCESS,
            )
        elif workspace.platform == MATTERMOST:
            steps = "Set the Mattermost slash command's request method to POST."
            steps += _endpoint_sentence(workspace)
            if not secret:
                steps += " Then paste the command's token here: until then it is refused."
            self.message_user(request, steps, messages.SUCCESS)

    def save_related(self, request, form, formsets, change):
        pass  # the channel roles were set (and logged) by save_model through the service

    # Deleting: through the service (checked, and logged with what went with it).

    def get_deleted_objects(self, objs, request):
        # Django's own listing would ask the question admin, which deletes nothing, and so
        # refuse; what goes with the workspace is listed here instead.
        workspaces = list(objs)
        totals = {w.pk: (w.identities.count(), w.questions.count()) for w in workspaces}
        lines = [
            format_html(
                '{}: <a href="{}">{}</a> ({} linked identities and {} questions go with it)',
                "Chat workspace",
                reverse("admin:integrations_workspace_change", args=[w.pk]),
                w,
                *totals[w.pk],
            )
            for w in workspaces
        ]
        counts = {
            "chat workspaces": len(workspaces),
            "linked identities": sum(t[0] for t in totals.values()),
            "questions": sum(t[1] for t in totals.values()),
        }
        return lines, counts, set(), []

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ManagementDenied as exc:
            self.message_user(request, f"Nothing was deleted: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj):
        workspace = Workspace.objects.get(pk=obj.pk)
        services.workspace_delete(actor=request_actor(request), workspace=workspace)

    def delete_queryset(self, request, queryset):
        for workspace in queryset:
            self.delete_model(request, workspace)

    # Columns

    @admin.display(description="channel roles")
    def channel_role_list(self, workspace):
        return ", ".join(sorted(r.name for r in workspace.channel_roles.all())) or "— (none)"

    @admin.display(description="linked identities", ordering="identity_total")
    def identity_count(self, workspace):
        return workspace.identity_total

    @admin.display(description="questions", ordering="question_total")
    def question_count(self, workspace):
        return workspace.question_total


def _endpoint_sentence(workspace: Workspace) -> str:
    name = "integration-mattermost" if workspace.platform == MATTERMOST else "integration-webhook"
    try:
        path = reverse(name, args=[workspace.pk])
    except NoReverseMatch:
        return ""
    return f" The platform posts to {path} on this server."


# Linked identities


@admin.register(LinkedIdentity)
class LinkedIdentityAdmin(NoAdminHistory, admin.ModelAdmin):
    list_display = ["workspace", "external_user_id", "user", "linked_by_email", "linked_at"]
    list_filter = [("workspace", admin.RelatedOnlyFieldListFilter), "linked_by_email"]
    list_select_related = ["workspace", "user"]
    search_fields = ["user__username", "external_user_id"]
    search_help_text = "Search by username or platform user id."
    fields = ["workspace", "external_user_id", "user", "linked_by_email", "linked_at"]
    readonly_fields = fields
    actions = ["unlink_selected"]

    # Permissions: unlinking is managing the user (accounts.policy.can_manage_user).

    def has_module_permission(self, request):
        return request_actor(request).manages_users

    def has_view_permission(self, request, obj=None):
        actor = request_actor(request)
        if obj is None:
            return actor.manages_users
        return policy.can_manage_user(actor, obj.user)

    def has_add_permission(self, request):
        return False  # links are made only by the person, through the link flow

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        actor = request_actor(request)
        if obj is None:
            return actor.manages_users
        return policy.can_manage_user(actor, obj.user)

    def get_queryset(self, request):
        """Only identities of users the actor manages (policy.manageable_users)."""
        identities = super().get_queryset(request).select_related("workspace", "user")
        return identities.filter(user__in=policy.manageable_users(request_actor(request)))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # unlinking goes through the service below
        return actions

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {"title": "Linked identities", **(extra_context or {})}
        )

    # Unlinking: through integrations.services.identity_unlink, checked and logged each.

    def _unlink(self, request, identities) -> tuple[int, int]:
        actor = request_actor(request)
        done = skipped = 0
        for identity in identities:
            try:
                services.identity_unlink(actor=actor, identity=identity)
            except ManagementDenied:
                skipped += 1
            else:
                done += 1
        return done, skipped

    @admin.action(permissions=["delete"], description="Unlink selected identities")
    def unlink_selected(self, request, queryset):
        done, skipped = self._unlink(request, queryset.select_related("workspace", "user"))
        self.message_user(
            request,
            f"Unlinked {done} identit{'y' if done == 1 else 'ies'}; each person is asked to "
            "link again on their next question.",
        )
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped} identit{'y' if skipped == 1 else 'ies'} of users you may "
                "not change.",
                messages.WARNING,
            )

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ManagementDenied as exc:
            self.message_user(request, f"Nothing was unlinked: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj):
        services.identity_unlink(actor=request_actor(request), identity=obj)

    def delete_queryset(self, request, queryset):
        _done, skipped = self._unlink(request, queryset.select_related("workspace", "user"))
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} identities you may not unlink.", messages.WARNING
            )


# Questions received


@admin.register(Question)
class QuestionAdmin(AuditedReadOnlyAdmin):
    """Read-only, for auditors; the question's text only on its own page. Each list and
    detail read is logged (a detail read as a conversation read: it shows what was asked)."""

    read_action = Action.CONVERSATION_READ
    read_target_type = "chat_question"
    list_display = [
        "created_at", "workspace", "kind", "external_user_id", "channel_id", "status",
        "error", "replied_at", "answer_links",
    ]  # fmt: skip
    list_display_links = ["created_at"]
    list_filter = [("workspace", admin.RelatedOnlyFieldListFilter), "kind", "status"]
    list_select_related = ["workspace"]
    # Not the text: a search would tell the list's reader what was asked.
    search_fields = ["external_user_id", "channel_id"]
    search_help_text = "Search by platform user id or channel id."
    date_hierarchy = "created_at"
    actions = None
    # Not response_url: it lets whoever holds it post into the conversation.
    fields = [
        "created_at", "workspace", "kind", "external_user_id", "channel_id", "channel_type",
        "thread_ts", "text", "status", "error", "replied_at", "answer_links",
    ]  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(answer_audit_pk=F("message__audit__id"))

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {"title": "Questions from chat platforms", **(extra_context or {})}
        )

    def detail_label(self, obj) -> str:
        return f"question {obj.pk} from {obj.external_user_id} in {obj.workspace}"

    @admin.display(description="answer")
    def answer_links(self, question):
        if question.message_id is None:
            return "—"
        links = [
            (
                reverse("admin:chatbot_message_change", args=[question.message_id]),
                f"message {question.message_id}",
            )
        ]
        audit_pk = getattr(question, "answer_audit_pk", None)
        if audit_pk is not None:
            links.append((reverse("admin:chatbot_answeraudit_change", args=[audit_pk]), "audit"))
        return format_html_join(" · ", '<a href="{}">{}</a>', links)
