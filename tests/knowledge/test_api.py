import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.selectors import user_scope
from knowledge.retrieval import chunk_search
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    finance, legal = factories.role("finance"), factories.role("legal")
    report = factories.indexed_document(
        title="Q3 report", text="Q3 revenue was 4.2 million euros.", roles=[finance]
    )
    memo = factories.indexed_document(
        title="Case memo", text="Case 2024-CV-0193 settles for 80,000.", roles=[legal]
    )
    return finance, legal, report, memo


def test_search_api_returns_only_in_scope_results(setup):
    finance, _, report, _ = setup
    client = factories.api_client(factories.user(roles=[finance]))
    response = client.post(
        "/api/v1/search/", {"query": "revenue case settle", "k": 5}, format="json"
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert {r["document_id"] for r in results} == {report.pk}
    assert set(results[0]) >= {"document_id", "title", "chunk_id", "text", "score"}
    assert "Case" not in str(results)


def test_search_validates_input(setup):
    client = factories.api_client(factories.user(roles=[setup[0]]))
    assert client.post("/api/v1/search/", {}, format="json").status_code == 400
    bad_k = client.post("/api/v1/search/", {"query": "x", "k": 0}, format="json")
    assert bad_k.status_code == 400 and "k" in bad_k.json()["detail"]
    garbage = client.post("/api/v1/search/", data="{", content_type="application/json")
    assert garbage.status_code == 400


def test_document_list_and_detail_are_scoped(setup):
    finance, _, report, memo = setup
    client = factories.api_client(factories.user(roles=[finance]))

    listing = client.get("/api/v1/documents/").json()
    assert listing["count"] == 1 and listing["results"][0]["title"] == "Q3 report"

    detail = client.get(f"/api/v1/documents/{report.pk}/").json()
    assert detail["status"] == "ready" and detail["chunk_count"] == 1

    hidden = client.get(f"/api/v1/documents/{memo.pk}/")
    assert hidden.status_code == 404
    missing = client.get("/api/v1/documents/999999/")
    assert missing.json() == hidden.json()  # no existence oracle


def test_unknown_api_path_is_json_404():
    response = factories.api_client().get("/api/v1/nope/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_chunk_detail_is_scoped(setup):
    finance, _, report, memo = setup
    client = factories.api_client(factories.user(roles=[finance]))
    own = factories.stored_chunks(document=report)[0]
    body = client.get(f"/api/v1/chunks/{own.pk}/").json()
    assert body["text"] == own.text and body["title"] == "Q3 report"
    other = factories.stored_chunks(document=memo)[0]
    hidden = client.get(f"/api/v1/chunks/{other.pk}/")
    assert hidden.status_code == 404 and "Case" not in hidden.content.decode()


def test_a_rejected_file_leaves_a_patch_with_nothing_changed(setup):
    finance, _, report, _ = setup
    staff = factories.api_client(factories.superuser())
    finance_reader = factories.user(roles=[finance])
    url = f"/api/v1/documents/{report.pk}/"

    response = staff.patch(
        url,
        {"roles": "legal", "title": "Renamed", "file": SimpleUploadedFile("tool.exe", b"MZ...")},
        format="multipart",
    )

    assert response.status_code == 415
    report.refresh_from_db()
    assert [r.name for r in report.roles.all()] == ["finance"] and report.title == "Q3 report"
    hits = chunk_search(scope=user_scope(user=finance_reader), query="Q3 revenue", k=5)
    assert [h.document_id for h in hits] == [report.pk]

    response = staff.patch(url, {"roles": ["legal"], "title": "Renamed"}, format="json")

    assert response.status_code == 200 and response.json()["roles"] == ["legal"]
    assert chunk_search(scope=user_scope(user=finance_reader), query="Q3 revenue", k=5) == []
