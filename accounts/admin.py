"""The console's users, roles and access log.

Every permission question is answered by accounts.policy (never by Django's model
permissions), and every change goes through accounts.services, which checks the same rule
again and writes the access log.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserCreationForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q, Sum
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts import policy, services
from accounts.models import AccessLogEntry, Role, User
from accounts.policy import ManagementDenied, request_actor
from config.csv_export import csv_response

# Groups would grant permissions around the management model: not in the console.
if admin.site.is_registered(Group):
    admin.site.unregister(Group)


def _role_names(roles) -> str:
    return ", ".join(r.name for r in roles) or "—"


# Users


class UserCreateForm(UserCreationForm):
    usable_password = None  # every user created here can log in with the password given
    email = forms.EmailField(required=False)
    roles = forms.ModelMultipleChoiceField(
        Role.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class UserChangeForm(forms.ModelForm):
    manages_users = forms.BooleanField(
        required=False, help_text="Staff only: may create and change non-staff users."
    )
    audits = forms.BooleanField(
        required=False,
        help_text="May read other users' conversations and answer audits, and view as user.",
    )

    class Meta:
        model = User
        fields = ("email", "first_name", "last_name", "is_active", "is_staff", "is_superuser")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "roles" in self.fields:
            self.fields["roles"].queryset = Role.objects.all()


class PasswordSetForm(AdminPasswordChangeForm):
    usable_password = None


class RoleGrantForm(forms.Form):
    role = forms.ModelChoiceField(Role.objects.all())


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreateForm
    change_password_form = PasswordSetForm
    list_display = [
        "username",
        "full_name",
        "role_list",
        "managed_role_list",
        "is_active",
        "last_login",
        "last_question",
    ]
    list_filter = ["is_active", "is_staff", "is_superuser", "roles"]
    search_fields = ["username", "first_name", "last_name", "email"]
    filter_horizontal = ["roles"]
    ordering = ["username"]
    actions = ["grant_role", "deactivate"]
    readonly_fields = ["managed_role_list", "last_login", "date_joined", "last_question"]
    add_fieldsets = [
        (None, {"fields": ["username", "password1", "password2", "email", "roles"]}),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related("roles", "managed_roles")
            .annotate(last_question_at=Max("conversations__updated_at"))
        )

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.add_fieldsets
        actor = request_actor(request)
        fieldsets = [
            (None, {"fields": ["username", "email", "first_name", "last_name"]}),
            ("Access", {"fields": ["is_active", "roles", "managed_role_list"]}),
            ("Activity", {"fields": ["last_login", "last_question", "date_joined"]}),
        ]
        if actor.is_superuser:
            fieldsets.insert(
                2,
                (
                    "Management (superusers only)",
                    {"fields": ["is_staff", "is_superuser", "manages_users", "audits"]},
                ),
            )
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        fields = [*self.readonly_fields, "username"] if obj else []
        return fields

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and "manages_users" in form.base_fields:
            grants = services._direct_grants(obj)
            form.base_fields["manages_users"].initial = grants["manages_users"]
            form.base_fields["audits"].initial = grants["audits"]
        return form

    # Permissions: the management model, not Django's model permissions.

    def has_module_permission(self, request):
        return request_actor(request).manages_users

    def has_view_permission(self, request, obj=None):
        return request_actor(request).manages_users

    def has_add_permission(self, request):
        return policy.can_create_user(request_actor(request))

    def has_change_permission(self, request, obj=None):
        actor = request_actor(request)
        return actor.manages_users if obj is None else policy.can_manage_user(actor, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead: conversations and the audit trail keep their owner

    # Saving: through the services (checked again there, and logged).

    def save_model(self, request, obj, form, change):
        actor = request_actor(request)
        data = form.cleaned_data
        if not change:
            user = services.user_create(
                actor=actor,
                username=data["username"],
                password=data["password1"],
                email=data.get("email", ""),
                role_names=[r.name for r in data.get("roles", [])],
            )
            obj.pk = obj.id = user.pk
            obj._state.adding = False
            return
        fields = {}
        for name in ("email", "is_active", "is_staff", "is_superuser"):
            if name in form.changed_data:
                fields[name] = data[name]
        if "roles" in data:
            fields["role_names"] = [r.name for r in data["roles"]]
        user = User.objects.get(pk=obj.pk)
        services.user_update(actor=actor, user=user, **fields)
        names = {n: data[n] for n in ("first_name", "last_name") if n in form.changed_data}
        if names:
            User.objects.filter(pk=obj.pk).update(**names)  # not access: not logged
        if actor.is_superuser and {"manages_users", "audits"} & set(form.changed_data):
            services.user_set_grants(
                actor=actor,
                user=user,
                manages_users=data.get("manages_users"),
                audits=data.get("audits"),
            )

    def save_related(self, request, form, formsets, change):
        pass  # roles were saved (and logged) by save_model through the services

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ManagementDenied as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def user_change_password(self, request, id, form_url=""):
        user = self.get_object(request, unquote(id))
        actor = request_actor(request)
        if user is None or not policy.can_set_password(actor, user):
            raise PermissionDenied
        if request.method == "POST":
            form = self.change_password_form(user, request.POST)
            if form.is_valid():
                services.user_update(
                    actor=actor, user=user, password=form.cleaned_data["password1"]
                )
                self.message_user(
                    request, "Password set; the user's API tokens were revoked.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
        return super().user_change_password(request, id, form_url)

    # Columns

    @admin.display(description="name")
    def full_name(self, user):
        return user.get_full_name() or "—"

    @admin.display(description="roles")
    def role_list(self, user):
        return _role_names(user.roles.all())

    @admin.display(description="manages roles")
    def managed_role_list(self, user):
        return _role_names(user.managed_roles.all())

    @admin.display(description="last question", ordering="last_question_at")
    def last_question(self, user):
        return getattr(user, "last_question_at", None) or "—"

    # Actions

    @admin.action(description="Grant a role to the selected users")
    def grant_role(self, request, queryset):
        actor = request_actor(request)
        allowed = [u for u in queryset if policy.can_manage_user(actor, u)]
        skipped = queryset.count() - len(allowed)
        form = RoleGrantForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            role = form.cleaned_data["role"]
            granted = services.users_grant_role(actor=actor, users=allowed, role=role)
            self.message_user(request, f"Granted '{role.name}' to {granted} user(s).")
            if skipped:
                self.message_user(
                    request, f"Skipped {skipped} user(s) you may not change.", messages.WARNING
                )
            return None
        return TemplateResponse(
            request,
            "admin/accounts/user/grant_role.html",
            {
                **self.admin_site.each_context(request),
                "title": "Grant a role",
                "form": form,
                "users": allowed,
                "skipped": skipped,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description="Deactivate the selected users (revokes their API tokens)")
    def deactivate(self, request, queryset):
        actor = request_actor(request)
        done = skipped = 0
        for user in queryset.filter(is_active=True):
            if policy.can_manage_user(actor, user) and user.pk != actor.user_id:
                services.user_update(actor=actor, user=user, is_active=False)
                done += 1
            else:
                skipped += 1
        self.message_user(request, f"Deactivated {done} user(s).")
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} user(s) you may not change.", messages.WARNING
            )


# Roles


class RoleForm(forms.ModelForm):
    class Meta:
        model = Role
        fields = ["name", "description", "managers"]


class RoleDeleteForm(forms.Form):
    move_to = forms.ModelChoiceField(
        Role.objects.none(),
        required=False,
        help_text="The role that takes over this role's documents.",
    )


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    form = RoleForm
    list_display = ["name", "description", "member_count", "manager_list", "document_count"]
    search_fields = ["name", "description"]
    filter_horizontal = ["managers"]
    readonly_fields = ["member_list", "document_list", "chunk_total"]
    actions = None

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related("managers")
            .annotate(
                members=Count("users", filter=Q(users__is_active=True), distinct=True),
                document_total=Count("documents", distinct=True),
            )
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "description", "managers"]
        fields = ["name", "description", "managers", "member_list"]
        if request_actor(request).is_superuser:
            fields += ["document_list", "chunk_total"]
        return fields

    def get_list_display(self, request):
        # Which documents a role holds is for superusers: a user manager may not learn that a
        # document exists (role managers see theirs on the Documents page).
        if request_actor(request).is_superuser:
            return self.list_display
        return [c for c in self.list_display if c != "document_count"]

    def has_module_permission(self, request):
        actor = request_actor(request)
        return actor.is_superuser or actor.manages_users

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return policy.can_manage_roles(request_actor(request))

    def has_change_permission(self, request, obj=None):
        return policy.can_manage_roles(request_actor(request))

    def has_delete_permission(self, request, obj=None):
        return policy.can_manage_roles(request_actor(request))

    def save_model(self, request, obj, form, change):
        actor = request_actor(request)
        data = form.cleaned_data
        if change:
            role = services.role_update(
                actor=actor,
                role=Role.objects.get(pk=obj.pk),
                name=data["name"],
                description=data["description"],
            )
        else:
            role = services.role_create(
                actor=actor, name=data["name"], description=data["description"]
            )
            obj.pk = obj.id = role.pk
            obj._state.adding = False
        services.role_set_managers(actor=actor, role=role, managers=list(data["managers"]))

    def save_related(self, request, form, formsets, change):
        pass  # managers were saved (and logged) by save_model

    def delete_view(self, request, object_id, extra_context=None):
        role = self.get_object(request, unquote(object_id))
        if role is None or not self.has_delete_permission(request, role):
            raise PermissionDenied
        from knowledge.selectors import documents_only_in_role

        orphans = documents_only_in_role(role_id=role.pk)
        form = RoleDeleteForm(request.POST or None)
        form.fields["move_to"].queryset = Role.objects.exclude(pk=role.pk)
        form.fields["move_to"].required = bool(orphans)
        if request.method == "POST" and form.is_valid():
            try:
                services.role_delete(
                    actor=request_actor(request), role=role, move_to=form.cleaned_data["move_to"]
                )
            except services.RoleInUse as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Deleted role '{role.name}'.")
                return HttpResponseRedirect(reverse("admin:accounts_role_changelist"))
        return TemplateResponse(
            request,
            "admin/accounts/role/delete_role.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Delete role '{role.name}'",
                "role": role,
                "form": form,
                "orphans": orphans,
                "document_count": role.documents.count(),
                "member_count": role.users.count(),
                "opts": self.model._meta,
                "object": role,
            },
        )

    @admin.display(description="active members", ordering="members")
    def member_count(self, role):
        return role.members

    @admin.display(description="managers")
    def manager_list(self, role):
        return ", ".join(u.username for u in role.managers.all()) or "—"

    @admin.display(description="documents", ordering="document_total")
    def document_count(self, role):
        return role.document_total

    @admin.display(description="members")
    def member_list(self, role):
        users = role.users.order_by("username")
        return (
            format_html_join(
                ", ",
                '<a href="{}">{}</a>{}',
                (
                    (
                        reverse("admin:accounts_user_change", args=[u.pk]),
                        u.username,
                        "" if u.is_active else " (inactive)",
                    )
                    for u in users
                ),
            )
            or "—"
        )

    @admin.display(description="documents visible to this role")
    def document_list(self, role):
        documents = role.documents.order_by("title")
        return (
            format_html_join(
                format_html("<br>"),
                '<a href="{}">{}</a> ({}, {} chunks)',
                (
                    (
                        reverse("admin:knowledge_document_change", args=[d.pk]),
                        d.title,
                        d.status,
                        d.chunk_count,
                    )
                    for d in documents
                ),
            )
            or "—"
        )

    @admin.display(description="chunks")
    def chunk_total(self, role):
        return role.documents.aggregate(total=Sum("chunk_count"))["total"] or 0


# The access log


@admin.register(AccessLogEntry)
class AccessLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_username", "action", "target", "change"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor_username", "target_label"]
    date_hierarchy = "created_at"
    actions = None
    readonly_fields = [
        "created_at", "actor", "actor_username", "action", "target_type", "target_id",
        "target_label", "before", "after",
    ]  # fmt: skip
    change_list_template = "admin/accounts/accesslogentry/change_list.html"

    def has_module_permission(self, request):
        actor = request_actor(request)
        return actor.is_superuser or actor.audits

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="target")
    def target(self, entry):
        return f"{entry.target_type} {entry.target_label or entry.target_id}"

    @admin.display(description="before → after")
    def change(self, entry):
        return format_html("{} → {}", _short(entry.before), _short(entry.after))

    def get_urls(self):
        from django.urls import path

        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_csv),
                name="accounts_accesslogentry_export",
            ),
            *super().get_urls(),
        ]

    def export_csv(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        entries = changelist.get_queryset(request).order_by("created_at", "id")
        return csv_response(
            filename="access-log.csv",
            header=[
                "time",
                "actor",
                "action",
                "target type",
                "target id",
                "target",
                "before",
                "after",
            ],
            rows=(
                (
                    e.created_at.isoformat(),
                    e.actor_username,
                    e.action,
                    e.target_type,
                    e.target_id,
                    e.target_label,
                    e.before,
                    e.after,
                )
                for e in entries.iterator()
            ),
        )


def _short(value: dict) -> str:
    text = ", ".join(f"{k}: {v}" for k, v in value.items()) if value else "—"
    return text if len(text) <= 120 else text[:119] + "…"
