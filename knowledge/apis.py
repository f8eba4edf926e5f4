from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from knowledge.models import Document
from knowledge.selectors import access_document, chunk_search, document_list_for_user


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


class DocumentListApi(ListAPIView):
    serializer_class = DocumentOutputSerializer

    def get_queryset(self):
        return document_list_for_user(user=self.request.user)


class DocumentDetailApi(APIView):
    @extend_schema(responses=DocumentOutputSerializer)
    def get(self, request, document_id: int):
        document = access_document(user=request.user, document_id=document_id)
        return Response(DocumentOutputSerializer(document).data)


class SearchApi(APIView):
    class InputSerializer(serializers.Serializer):
        query = serializers.CharField(max_length=2000)
        k = serializers.IntegerField(min_value=1, max_value=50, default=5)

    class HitSerializer(serializers.Serializer):
        document_id = serializers.IntegerField()
        title = serializers.CharField()
        chunk_id = serializers.IntegerField()
        text = serializers.CharField()
        heading = serializers.CharField()
        page = serializers.IntegerField(allow_null=True)
        position = serializers.IntegerField()
        score = serializers.FloatField()

    class OutputSerializer(serializers.Serializer):
        results = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        request=InputSerializer,
        responses={200: HitSerializer(many=True)},
        description="Hybrid search over the chunks the caller's roles may see.",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        hits = chunk_search(user=request.user, **data.validated_data)
        return Response({"results": self.HitSerializer(hits, many=True).data})
