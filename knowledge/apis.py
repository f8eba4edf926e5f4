from django.conf import settings
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import policy
from accounts.models import User
from accounts.policy import ManagementDenied, actor_for
from accounts.selectors import UnknownRoles, roles_by_names, user_scope
from config.parsers import LimitedJSONParser
from config.serializers import StrictSerializer
from knowledge import services
from knowledge.access import (
    access_chunk,
    access_document_or_its_status,
    document_list_for_management,
    document_list_for_user,
)
from knowledge.models import Document
from knowledge.retrieval import chunk_search


class DocumentOutputSerializer(serializers.ModelSerializer):
    roles = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = [
            "id",
            "title",
            "status",
            "error",
            "roles",
            "chunk_count",
            "progress",
            "original_filename",
            "content_type",
            "size_bytes",
            "content_hash",
            "created_at",
            "updated_at",
        ]

    def get_progress(self, document) -> dict:
        return {"done": document.progress_done, "total": document.progress_total}


class _RolesField(serializers.ListField):
    """Role names as a JSON list, or in a form as repeated fields or one comma-separated value."""

    child = serializers.CharField()

    def __init__(self, **kwargs):
        kwargs.setdefault("min_length", 1)
        kwargs.setdefault("help_text", "role names; at least one (each must exist)")
        super().__init__(**kwargs)

    def get_value(self, dictionary):
        if hasattr(dictionary, "getlist") and self.field_name in dictionary:
            values = dictionary.getlist(self.field_name)
            return [n.strip() for value in values for n in str(value).split(",") if n.strip()]
        return super().get_value(dictionary)


class UploadRejectedError(APIException):
    def __init__(self, exc: services.UploadRejected):
        super().__init__(detail=str(exc))
        self.status_code = exc.status


def _roles_or_400(names):
    if not names:
        raise ValidationError({"roles": ["At least one role is required."]})
    try:
        return roles_by_names(names=names)
    except UnknownRoles as exc:
        raise ValidationError({"roles": [str(exc)]}) from None


def _flag(params, name: str) -> bool:
    """A boolean query parameter: absent, true or false (1/0); anything else is a 400."""
    value = params.get(name)
    if value is None:
        return False
    if value.lower() not in ("true", "false", "1", "0"):
        raise ValidationError({name: ["Must be true or false."]})
    return value.lower() in ("true", "1")


def _document_manager(request):
    """The request's Actor when it manages any role (else 403, before the body is read)."""
    actor = actor_for(user=request.user)
    if not actor.manages_documents:
        raise ManagementDenied("You do not manage any role, so you cannot manage documents.")
    return actor


class DocumentListApi(ListAPIView):
    serializer_class = DocumentOutputSerializer
    parser_classes = [MultiPartParser, FormParser]

    class UploadSerializer(StrictSerializer):
        file = serializers.FileField(allow_empty_file=True)
        title = serializers.CharField(max_length=255, required=False, allow_blank=True)
        roles = _RolesField()

    def get_queryset(self):
        if _flag(self.request.query_params, "managed"):
            return document_list_for_management(actor=actor_for(user=self.request.user))
        return document_list_for_user(scope=user_scope(user=self.request.user))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "managed",
                bool,
                description="true: the documents you manage or uploaded (with their status), "
                "instead of the documents you can read",
            )
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={
            202: DocumentOutputSerializer,
            200: OpenApiResponse(DocumentOutputSerializer, "The same file with the same roles"),
            413: OpenApiResponse(description="File over the size limit"),
            415: OpenApiResponse(description="Unsupported file type"),
        },
    )
    def post(self, request):
        actor = _document_manager(request)
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.INGEST_MAX_UPLOAD_BYTES + 64 * 1024:
            # Refused from the headers alone, before the body is read.
            return Response(
                {"detail": services.upload_limit_message()},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        data = self.UploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        roles = _roles_or_400(data.validated_data["roles"])
        try:
            document, created = services.document_upload(
                actor=actor,
                file=data.validated_data["file"],
                roles=roles,
                title=data.validated_data.get("title", ""),
            )
        except services.UploadRejected as exc:
            raise UploadRejectedError(exc) from None
        return Response(
            DocumentOutputSerializer(document).data,
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )


def _document_or_404(request, document_id: int):
    return access_document_or_its_status(
        scope=user_scope(user=request.user),
        actor=actor_for(user=request.user),
        document_id=document_id,
    )


class DocumentDetailApi(APIView):
    parser_classes = [LimitedJSONParser, MultiPartParser, FormParser]

    class UpdateSerializer(StrictSerializer):
        roles = _RolesField(required=False)
        title = serializers.CharField(max_length=255, required=False)
        file = serializers.FileField(required=False, allow_empty_file=True)

    @extend_schema(
        responses=DocumentOutputSerializer,
        description="A document you can read, or one you uploaded or whose roles you manage.",
    )
    def get(self, request, document_id: int):
        return Response(DocumentOutputSerializer(_document_or_404(request, document_id)).data)

    @extend_schema(
        request={
            "application/json": UpdateSerializer,
            "multipart/form-data": UpdateSerializer,
        },
        responses=DocumentOutputSerializer,
        description="Re-scope (roles: effective at once, no re-embedding), rename, or replace "
        "the file (re-ingested; the old chunks stay searchable until the new ones commit).",
    )
    def patch(self, request, document_id: int):
        actor = _document_manager(request)
        document = _document_or_404(request, document_id)
        data = self.UpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            document = services.document_update(
                actor=actor,
                document=document,
                roles=_roles_or_400(values["roles"]) if "roles" in values else None,
                title=values.get("title"),
                file=values.get("file"),
            )
        except services.UploadRejected as exc:
            raise UploadRejectedError(exc) from None
        return Response(DocumentOutputSerializer(_document_or_404(request, document_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, document_id: int):
        actor = _document_manager(request)
        services.document_delete(actor=actor, document=_document_or_404(request, document_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DocumentFileApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request, document_id: int):
        document = _document_or_404(request, document_id)
        if not document.file:
            return Response({"detail": "This document has no stored file."}, status=404)
        return FileResponse(
            document.file.open("rb"),
            as_attachment=True,
            filename=document.original_filename or None,
            content_type=document.content_type or "application/octet-stream",
        )


class PassageSerializer(serializers.Serializer):
    chunk_id = serializers.IntegerField()
    document_id = serializers.IntegerField()
    title = serializers.CharField()
    heading = serializers.CharField()
    page = serializers.IntegerField(allow_null=True)
    position = serializers.IntegerField()
    text = serializers.CharField()


class SearchHitSerializer(PassageSerializer):
    score = serializers.FloatField()


class ChunkDetailApi(APIView):
    @extend_schema(responses=PassageSerializer, description="One passage, if in your scope.")
    def get(self, request, chunk_id: int):
        passage = access_chunk(scope=user_scope(user=request.user), chunk_id=chunk_id)
        return Response(PassageSerializer(passage).data)


class SearchApi(APIView):
    throttle_scope = "search"

    class SearchRequestSerializer(StrictSerializer):
        query = serializers.CharField(max_length=2000)
        k = serializers.IntegerField(min_value=1, max_value=50, default=5)

    class SearchResultsSerializer(serializers.Serializer):
        results = SearchHitSerializer(many=True)

    @extend_schema(
        request=SearchRequestSerializer,
        responses={200: SearchResultsSerializer},
        description="Hybrid search over the chunks the caller's roles may see.",
    )
    def post(self, request):
        data = self.SearchRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        hits = chunk_search(scope=user_scope(user=request.user), **data.validated_data)
        return Response({"results": SearchHitSerializer(hits, many=True).data})


class SearchAsUserApi(APIView):
    class SearchAsRequestSerializer(StrictSerializer):
        username = serializers.CharField(max_length=150)
        query = serializers.CharField(max_length=2000)
        k = serializers.IntegerField(min_value=1, max_value=50, default=10)

    class SearchAsResultSerializer(serializers.Serializer):
        username = serializers.CharField()
        roles = serializers.ListField(child=serializers.CharField())
        plan = serializers.CharField()
        visible_estimate = serializers.IntegerField()
        results = SearchHitSerializer(many=True)

    @extend_schema(
        request=SearchAsRequestSerializer,
        responses={
            200: SearchAsResultSerializer,
            404: OpenApiResponse(description="no user with this username"),
        },
        description="Search exactly as another user would (their roles, the same scoped "
        "search), with the plan it ran. Needs the audit permission; every use is logged.",
    )
    def post(self, request):
        actor = actor_for(user=request.user)
        policy.check_audit(actor)
        data = self.SearchAsRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = get_object_or_404(User, username=values["username"])
        scope, hits, plan = services.search_as_user(
            actor=actor, user=user, query=values["query"], k=values["k"]
        )
        body = {
            "username": user.username,
            "roles": list(scope.role_names),
            "plan": plan.name,
            "visible_estimate": plan.visible_estimate,
            "results": hits,
        }
        return Response(self.SearchAsResultSerializer(body).data)
