"""Console pages of the knowledge base that are not a model: "view as user", and the reads
the document pages show below the form ("who can see this", the passages).

The two reads here are selectors in all but location (knowledge/selectors.py is owned
elsewhere); they take a document whose management view the caller already checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page
from django.db.models import Count, Prefetch, Q
from django.template.response import TemplateResponse

from accounts import policy
from accounts.models import Role, User
from accounts.policy import request_actor
from accounts.selectors import Scope
from knowledge import services
from knowledge.models import Document
from knowledge.retrieval import SearchHit, SearchPlan
from knowledge.selectors import document_chunk_page_for_management

CHUNKS_PER_PAGE = 50
USERNAME_SUGGESTIONS = 500

# Reads for the document page


@dataclass(frozen=True)
class AudienceRole:
    role_id: int
    name: str
    active_members: int


@dataclass(frozen=True)
class AudienceMember:
    user_id: int
    username: str
    full_name: str
    email: str
    role_names: tuple[str, ...]


@dataclass(frozen=True)
class DocumentAudience:
    roles: tuple[AudienceRole, ...]
    members: tuple[AudienceMember, ...]


def document_audience(document: Document) -> DocumentAudience:
    """Who can retrieve the document now: its roles, and every active user holding at least
    one of them, with the roles that grant it. Read from the document-role and user-role
    relations (what retrieval's allowed_roles copies), never from chunk text."""
    roles = list(
        Role.objects.filter(documents=document)
        .annotate(active_members=Count("users", filter=Q(users__is_active=True), distinct=True))
        .order_by("name")
    )
    role_ids = [r.pk for r in roles]
    users = (
        User.objects.filter(is_active=True, roles__in=role_ids)
        .distinct()
        .order_by("username")
        .prefetch_related(
            Prefetch(
                "roles",
                queryset=Role.objects.filter(pk__in=role_ids).order_by("name"),
                to_attr="granting_roles",
            )
        )
    )
    return DocumentAudience(
        roles=tuple(AudienceRole(r.pk, r.name, r.active_members) for r in roles),
        members=tuple(
            AudienceMember(
                user_id=u.pk,
                username=u.username,
                full_name=u.get_full_name(),
                email=u.email,
                role_names=tuple(r.name for r in u.granting_roles),
            )
            for u in users
        ),
    )


def document_chunk_page(document: Document, *, page_number) -> Page:
    """One page of the document's passages in order, for its management view only."""
    return document_chunk_page_for_management(
        document_id=document.pk, per_page=CHUNKS_PER_PAGE, page_number=page_number
    )


# View as user


class ViewAsForm(forms.Form):
    username = forms.CharField(
        label="User",
        max_length=150,
        widget=forms.TextInput(attrs={"list": "active-usernames", "autocomplete": "off"}),
        help_text="The username of an active user.",
    )
    query = forms.CharField(
        label="Query",
        max_length=2000,
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )
    k = forms.IntegerField(
        label="Results",
        min_value=1,
        max_value=50,
        initial=10,
        widget=forms.NumberInput(attrs={"style": "width: 5em"}),
    )

    def clean_username(self) -> User:
        username = self.cleaned_data["username"].strip()
        user = User.objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError("No user has this username.")
        if not user.is_active:
            raise forms.ValidationError(
                "This user is inactive: an inactive user retrieves nothing."
            )
        return user


@dataclass(frozen=True)
class ViewAsResult:
    user: User
    scope: Scope
    hits: list[SearchHit]
    plan: SearchPlan
    query: str
    k: int


def view_as_view(request, site):
    """Search exactly as another user would: their roles, the same retrieval, nothing more.
    Needs the audit permission (403 otherwise); every search is logged by the service."""
    actor = request_actor(request)
    if not policy.can_audit(actor):
        raise PermissionDenied("Viewing as another user needs the audit permission.")
    result = None
    if request.method == "POST":
        form = ViewAsForm(request.POST)
        if form.is_valid():
            values = form.cleaned_data
            scope, hits, plan = services.search_as_user(
                actor=actor, user=values["username"], query=values["query"], k=values["k"]
            )
            result = ViewAsResult(
                user=values["username"],
                scope=scope,
                hits=hits,
                plan=plan,
                query=values["query"],
                k=values["k"],
            )
    else:
        form = ViewAsForm(initial={"username": request.GET.get("username", ""), "k": 10})
    usernames = (
        User.objects.filter(is_active=True)
        .order_by("username")
        .values_list("username", flat=True)[:USERNAME_SUGGESTIONS]
    )
    context = {
        **site.each_context(request),
        "title": "View as user",
        "subtitle": None,
        "form": form,
        "result": result,
        "active_usernames": usernames,
    }
    return TemplateResponse(request, "knowledge/console/view_as.html", context)
