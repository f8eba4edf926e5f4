from django.urls import path

from knowledge import apis

urlpatterns = [
    path("documents/", apis.DocumentListApi.as_view(), name="document-list"),
    path("documents/<int:document_id>/", apis.DocumentDetailApi.as_view(), name="document-detail"),
    path("documents/<int:document_id>/file/", apis.DocumentFileApi.as_view(), name="document-file"),
    path("chunks/<int:chunk_id>/", apis.ChunkDetailApi.as_view(), name="chunk-detail"),
    path("search/", apis.SearchApi.as_view(), name="search"),
    path("audit/search/", apis.SearchAsUserApi.as_view(), name="audit-search"),
]
