"""The admin console: Django's admin site with the management pages that are not a model
(the usage dashboard, "view as user"), at /admin/.

Each app registers its own models in its admin.py; every ModelAdmin answers its
has_*_permission from accounts.policy, so the console grants exactly what the API grants.
"""

from django.contrib import admin
from django.urls import path


class NoAdminHistory:
    """For a ModelAdmin whose changes go through services: they write the access log, and
    Django's LogEntry would be a second, partial history (naming fields without values)."""

    def log_addition(self, request, obj, message):
        return None

    def log_change(self, request, obj, message):
        return None

    def log_deletions(self, request, queryset):
        return None


class ConsoleSite(admin.AdminSite):
    site_header = "Knowledge console"
    site_title = "Knowledge console"
    index_title = "Users, roles, documents and the audit trail"
    index_template = "admin/console_index.html"
    # The lists (documents, users, audits) need the width more than a second menu does.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        from accounts.access_log import access_log_list
        from accounts.policy import can_audit, request_actor

        mine = access_log_list().filter(actor_id=request.user.pk)[:10]
        context = {
            "my_access_changes": mine,
            "may_audit": can_audit(request_actor(request)),
            **(extra_context or {}),
        }
        return super().index(request, context)

    def get_urls(self):
        from chatbot.console import dashboard_view
        from evaluation.console import (
            finetune_detail_view,
            finetune_list_view,
            run_detail_view,
            run_list_view,
            runs_compare_view,
        )
        from knowledge.console import view_as_view

        def with_site(view):
            def bound(request, *args, **kwargs):
                return view(request, *args, site=self, **kwargs)

            bound.__name__ = view.__name__
            return self.admin_view(bound)

        return [
            path("dashboard/", with_site(dashboard_view), name="dashboard"),
            path("view-as/", with_site(view_as_view), name="view-as"),
            path("evaluation-runs/", with_site(run_list_view), name="evaluation-runs"),
            path(
                "evaluation-runs/<int:run_id>/",
                with_site(run_detail_view),
                name="evaluation-run",
            ),
            path(
                "evaluation-runs/compare/",
                with_site(runs_compare_view),
                name="evaluation-compare",
            ),
            path("finetune-runs/", with_site(finetune_list_view), name="finetune-runs"),
            path(
                "finetune-runs/<int:run_id>/",
                with_site(finetune_detail_view),
                name="finetune-run",
            ),
            *super().get_urls(),
        ]
