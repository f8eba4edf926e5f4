"""The ingestion pipeline end to end: API upload -> Redis -> a real Celery worker -> index."""

import hashlib
import os
import signal
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import override_settings

from accounts.policy import operator
from accounts.selectors import user_scope
from knowledge import services
from knowledge.models import Document
from knowledge.retrieval import chunk_search
from knowledge.tasks import ingest_document, requeue_stuck_documents
from tests import factories
from tests import filebuilders as fb

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def staff():
    return factories.superuser("admin1")


@pytest.fixture
def roles():
    return factories.role("finance"), factories.role("legal")


def upload(client, name: str, data: bytes, roles: str = "finance", **extra):
    return client.post(
        "/api/v1/documents/",
        {"file": SimpleUploadedFile(name, data), "roles": roles, **extra},
        format="multipart",
    )


def _hits(user, query):
    return chunk_search(scope=user_scope(user=user), query=query, k=10)


SAMPLES = {
    "report.pdf": lambda: fb.make_pdf(["Zebra budget page one.", "Falcon reserve is 7,310 units."]),
    "memo.docx": lambda: fb.make_docx(
        [
            ("heading", 1, "Falcon reserve"),
            ("paragraph", "The Falcon reserve is 7,310 units."),
            ("table", [["item", "units"], ["falcon", "7,310"]]),
        ]
    ),
    "page.html": lambda: fb.make_html(
        "<h1>Falcon reserve</h1><p>The Falcon reserve is 7,310 units.</p>"
        "<script>var leak='scriptcanary';</script>"
    ),
    "notes.md": lambda: b"# Falcon reserve\n\nThe Falcon reserve is 7,310 units.\n",
    "legacy.txt": lambda: fb.make_text(
        "Caf\u00e9 cr\u00e8me: the Falcon reserve is 7,310 units.", encoding="cp1252"
    ),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_type_becomes_ready_and_searchable_only_by_its_roles(
    celery_worker, wait_for_document, staff, roles, name
):
    finance, legal = roles
    response = upload(factories.api_client(staff), name, SAMPLES[name]())
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["roles"] == ["finance"]

    document = wait_for_document(body["id"], "ready", "failed")
    assert document.status == "ready", document.error
    assert document.chunk_count >= 1

    reader, outsider = factories.user(roles=[finance]), factories.user(roles=[legal])
    hits = _hits(reader, "Falcon reserve units")
    assert hits and hits[0].document_id == document.pk
    assert "7,310" in " ".join(h.text for h in hits)
    assert all("scriptcanary" not in h.text for h in hits)
    assert _hits(outsider, "Falcon reserve units") == []
    detail = factories.api_client(reader).get(f"/api/v1/documents/{document.pk}/").json()
    assert detail["status"] == "ready" and detail["chunk_count"] == document.chunk_count
    assert detail["progress"]["done"] == detail["progress"]["total"] == document.chunk_count
    assert (
        factories.api_client(outsider).get(f"/api/v1/documents/{document.pk}/").status_code == 404
    )


def test_text_is_decoded_from_cp1252(celery_worker, wait_for_document, staff, roles):
    response = upload(factories.api_client(staff), "legacy.txt", SAMPLES["legacy.txt"]())
    wait_for_document(response.json()["id"], "ready")
    texts = " ".join(c.text for c in factories.stored_chunks())
    assert "Caf\u00e9 cr\u00e8me" in texts


BAD_FILES = {
    "corrupt.pdf": (fb.make_corrupt_pdf, "damaged"),
    "locked.pdf": (lambda: fb.make_pdf(["secret"], encrypt_password="pw"), "encrypted"),
    "scan.pdf": (fb.make_image_only_pdf, "OCR"),
    "fake.docx": (lambda: b"this is not a zip file at all", "not a zip"),
    "bomb.docx": (lambda: fb.make_zip_bomb_docx(201 * 1024 * 1024), "zip bomb"),
    "junk.txt": (fb.make_binary_junk, "not look like text"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_fail_with_a_reason_and_lose_nothing(
    celery_worker, wait_for_document, staff, roles, name
):
    finance, _ = roles
    keeper = factories.indexed_document(
        title="Keeper", text="The Falcon reserve is 7,310 units.", roles=[finance]
    )
    build, reason = BAD_FILES[name]
    response = upload(factories.api_client(staff), name, build())
    assert response.status_code == 202

    document = wait_for_document(response.json()["id"], "ready", "failed")
    assert document.status == "failed"
    assert reason.lower() in document.error.lower()
    assert document.chunk_count == 0 and not factories.stored_chunks(document=document)
    hits = _hits(factories.user(roles=[finance]), "Falcon reserve")
    assert [h.document_id for h in hits] == [keeper.pk]


def test_immediate_rejections(staff, roles):
    client = factories.api_client(staff)
    files_before = _stored_files()
    empty = upload(client, "empty.txt", b"")
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]

    unsupported = upload(client, "tool.exe", b"MZ\x90\x00")
    assert unsupported.status_code == 415
    assert "PDF" in unsupported.json()["detail"] and ".docx" in unsupported.json()["detail"]

    with override_settings(INGEST_MAX_UPLOAD_BYTES=1024):
        too_big = upload(client, "big.txt", b"x" * 4096)
    assert too_big.status_code == 413
    assert too_big.json()["detail"] == "The file is larger than the 1 KB limit."

    unknown = upload(client, "a.txt", b"hello", roles="finance,wizards")
    assert unknown.status_code == 400 and "wizards" in unknown.json()["detail"]

    no_roles = upload(client, "a.txt", b"hello", roles="")
    assert no_roles.status_code == 400 and "roles" in no_roles.json()["detail"]

    assert Document.objects.count() == 0
    assert _stored_files() == files_before


def _stored_files():
    from django.conf import settings

    root = os.path.join(settings.MEDIA_ROOT, "documents")
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_upload_needs_a_managed_role_not_a_model_permission(roles):
    finance, _ = roles
    plain = factories.grant(
        factories.user(roles=[finance], is_staff=True),
        "add_document",
        "change_document",
        "delete_document",
    )
    # Staff with every Django permission on documents still manages nothing.
    assert upload(factories.api_client(plain), "a.md", b"# A\n\nText").status_code == 403

    curator = factories.user(manages=[finance])
    allowed = upload(factories.api_client(curator), "a.md", b"# A\n\nText")
    assert allowed.status_code == 202
    doc_id = allowed.json()["id"]
    client = factories.api_client(curator)
    # Managing finance is not managing legal: no upload into it, no re-scope to it.
    assert upload(client, "b.md", b"# B\n\nText", roles="legal").status_code == 403
    moved = client.patch(f"/api/v1/documents/{doc_id}/", {"roles": ["legal"]}, format="json")
    assert moved.status_code == 403 and "legal" in moved.json()["detail"]
    assert list(Document.objects.get(pk=doc_id).roles.values_list("name", flat=True)) == ["finance"]


def test_duplicate_and_concurrent_tasks_leave_one_set_of_chunks(
    celery_worker, wait_for_document, staff, roles
):
    text = "\n\n".join(
        f"# Part {i}\n\n" + f"Clause {i} of the Falcon treaty. " * 40 for i in range(6)
    )
    response = upload(factories.api_client(staff), "treaty.md", text.encode())
    doc_id = response.json()["id"]
    for _ in range(3):
        ingest_document.delay(doc_id)
    document = wait_for_document(doc_id, "ready")
    time.sleep(3)  # let the duplicates run to completion
    # Run it again in this process, too: a no-op for an indexed document.
    from knowledge.ingestion.pipeline import document_ingest

    assert document_ingest(document_id=doc_id) == "already indexed"
    positions = [c.position for c in factories.stored_chunks(document_id=doc_id)]
    document.refresh_from_db()
    assert len(positions) == document.chunk_count > 1
    assert sorted(positions) == list(range(document.chunk_count))


def test_rescoping_changes_results_at_once_without_reembedding(
    celery_worker, wait_for_document, staff, roles
):
    finance, legal = roles
    client = factories.api_client(staff)
    doc_id = upload(client, "falcon.md", SAMPLES["notes.md"]()).json()["id"]
    wait_for_document(doc_id, "ready")
    before = [(c.pk, c.embedding) for c in factories.stored_chunks(document_id=doc_id)]
    finance_user, legal_user = factories.user(roles=[finance]), factories.user(roles=[legal])
    assert _hits(finance_user, "Falcon") and not _hits(legal_user, "Falcon")

    response = client.patch(f"/api/v1/documents/{doc_id}/", {"roles": ["legal"]}, format="json")
    assert response.status_code == 200 and response.json()["roles"] == ["legal"]

    assert not _hits(finance_user, "Falcon") and _hits(legal_user, "Falcon")
    after = [(c.pk, c.embedding) for c in factories.stored_chunks(document_id=doc_id)]
    assert [c[0] for c in after] == [c[0] for c in before]
    assert all(list(a[1]) == list(b[1]) for a, b in zip(after, before, strict=True))
    assert Document.objects.get(pk=doc_id).status == "ready"


def test_delete_removes_document_chunks_and_file(celery_worker, wait_for_document, staff, roles):
    client = factories.api_client(staff)
    doc_id = upload(client, "falcon.md", SAMPLES["notes.md"]()).json()["id"]
    document = wait_for_document(doc_id, "ready")
    path = document.file.path
    assert os.path.exists(path)

    assert client.delete(f"/api/v1/documents/{doc_id}/").status_code == 204

    assert not Document.objects.filter(pk=doc_id).exists()
    assert not factories.stored_chunks(document_id=doc_id)
    assert not os.path.exists(path)
    assert client.get(f"/api/v1/documents/{doc_id}/").status_code == 404


def test_original_file_is_served_only_in_scope(celery_worker, wait_for_document, staff, roles):
    finance, legal = roles
    data = SAMPLES["report.pdf"]()
    doc_id = upload(factories.api_client(staff), "report.pdf", data).json()["id"]
    wait_for_document(doc_id, "ready")

    response = factories.api_client(factories.user(roles=[finance])).get(
        f"/api/v1/documents/{doc_id}/file/"
    )
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert "report.pdf" in response["Content-Disposition"]
    outsider = factories.api_client(factories.user(roles=[legal]))
    assert outsider.get(f"/api/v1/documents/{doc_id}/file/").status_code == 404


def test_same_bytes_reuse_embeddings(celery_worker, wait_for_document, staff, roles):
    finance, legal = roles
    client = factories.api_client(staff)
    data = SAMPLES["notes.md"]()
    first_id = upload(client, "a.md", data, roles="finance").json()["id"]
    wait_for_document(first_id, "ready")

    same = upload(client, "copy.md", data, roles="finance")
    assert same.status_code == 200 and same.json()["id"] == first_id

    second = upload(client, "b.md", data, roles="legal")
    assert second.status_code == 202
    second_doc = wait_for_document(second.json()["id"], "ready")
    first_chunks = factories.stored_chunks(document_id=first_id)
    second_chunks = factories.stored_chunks(document=second_doc)
    assert len(first_chunks) == len(second_chunks) == second_doc.chunk_count
    for a, b in zip(first_chunks, second_chunks, strict=True):
        assert list(a.embedding) == list(b.embedding) and a.text == b.text
        assert factories.chunk_roles(a) == [finance.pk]
        assert factories.chunk_roles(b) == [legal.pk]
    assert "reused the chunks" in celery_worker.log_path.read_text()


def test_replacing_the_file_keeps_old_chunks_until_the_new_ones_commit(
    celery_worker, wait_for_document, staff, roles
):
    finance, _ = roles
    reader = factories.user(roles=[finance])
    client = factories.api_client(staff)
    doc_id = upload(client, "v1.md", b"# Version\n\nThe Osprey code is alpha-one.").json()["id"]
    wait_for_document(doc_id, "ready")

    celery_worker.stop()  # hold the re-ingestion so the in-between state can be observed
    try:
        new = SimpleUploadedFile("v2.md", b"# Version\n\nThe Osprey code is bravo-two.")
        response = client.patch(f"/api/v1/documents/{doc_id}/", {"file": new}, format="multipart")
        assert response.status_code == 200 and response.json()["status"] == "queued"
        assert "alpha-one" in " ".join(h.text for h in _hits(reader, "Osprey code"))
    finally:
        celery_worker.start()
    wait_for_document(doc_id, "ready")
    texts = " ".join(h.text for h in _hits(reader, "Osprey code"))
    assert "bravo-two" in texts and "alpha-one" not in texts


def test_sweep_recovers_a_document_whose_task_was_lost(celery_worker, wait_for_document, roles):
    finance, _ = roles
    # Stored and committed, but its task never reached the broker.
    with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
        from unittest import mock

        with mock.patch("knowledge.services._enqueue_ingest"):
            document, _ = services.document_upload(
                actor=operator(label="test"),
                file=SimpleUploadedFile("lost.md", b"# Lost\n\nThe Heron figure is 4,242."),
                roles=[finance],
            )
    time.sleep(1)
    assert Document.objects.get(pk=document.pk).status == "queued"

    # The beat sweep, run here as the worker would run it.
    assert requeue_stuck_documents(older_than_seconds=0) == 1

    wait_for_document(document.pk, "ready")
    assert "4,242" in _hits(factories.user(roles=[finance]), "Heron figure")[0].text


def test_worker_killed_mid_task_never_shows_a_half_index(celery_worker, wait_for_document, staff):
    factories.role("finance")
    reader = factories.user(roles=[factories.role("finance")])
    text = "\n\n".join(
        f"# Chapter {i}\n\n" + f"Kestrel procedure step {i} requires inspection. " * 30
        for i in range(80)
    )
    doc_id = upload(factories.api_client(staff), "big.md", text.encode()).json()["id"]
    wait_for_document(doc_id, "processing")
    deadline = time.monotonic() + 60
    while Document.objects.get(pk=doc_id).progress_done == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(factories.stored_chunks(document_id=doc_id)) == 0
    for child in celery_worker.pool_children():
        os.kill(child.pid, signal.SIGKILL)

    # Mid-way, nothing of the document is visible; after redelivery all of it is.
    assert _hits(reader, "Kestrel procedure") == []
    document = wait_for_document(doc_id, "ready", timeout=180)
    assert len(factories.stored_chunks(document_id=doc_id)) == document.chunk_count > 20
    assert "WorkerLostError" in celery_worker.log_path.read_text()


def test_ingest_command_walks_directories(celery_worker, wait_for_document, roles, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_bytes(b"# A\n\nThe Plover count is 12.")
    (tmp_path / "sub" / "b.html").write_bytes(fb.make_html("<p>The Plover total is 13.</p>"))
    (tmp_path / "sub" / "skip.exe").write_bytes(b"MZ")
    from io import StringIO

    out = StringIO()
    call_command("ingest", str(tmp_path), "--roles", "finance,legal", stdout=out, stderr=out)

    output = out.getvalue()
    assert "2 queued" in output and "1 rejected" in output and "skip.exe" in output
    for document in Document.objects.all():
        assert wait_for_document(document.pk, "ready").status == "ready"
        assert sorted(document.roles.values_list("name", flat=True)) == ["finance", "legal"]


MB = 1024 * 1024

# Crafted files and the reason each fails with, under the worker's default bounds.
CRAFTED_FILES = {
    "xml-bomb.docx": (lambda: fb.make_docx_xml_bomb(xml_bytes=21 * MB), "MB of XML"),
    "elements.docx": (lambda: fb.make_docx_xml_bomb(empty_paragraphs=1_100_000), "elements"),
    "exploding.pdf": (lambda: fb.make_exploding_pdf(40 * MB), "safety limit"),
    "lines.txt": (lambda: fb.make_short_lines_text(50 * MB), "1024 MB memory limit"),
}


def test_crafted_files_fail_quickly_and_the_worker_indexes_the_next_document(
    celery_worker, wait_for_document, staff, roles
):
    finance, _ = roles
    client = factories.api_client(staff)
    started = time.monotonic()
    ids = {}
    for name, (build, _) in CRAFTED_FILES.items():
        response = upload(client, name, build())
        assert response.status_code == 202, response.json()
        ids[name] = response.json()["id"]
    good = upload(client, "next.md", b"# Next\n\nThe Heron figure is 4,242.").json()["id"]

    for name, (_, reason) in CRAFTED_FILES.items():
        document = wait_for_document(ids[name], "ready", "failed")
        assert document.status == "failed", name
        assert reason in document.error, document.error
        assert not factories.stored_chunks(document=document)
    # Uploading takes ~6 s and the 50 MB text runs into the memory bound in ~10 s.
    assert time.monotonic() - started < 45
    assert wait_for_document(good, "ready", "failed", timeout=180).status == "ready"
    assert "4,242" in _hits(factories.user(roles=[finance]), "Heron figure")[0].text


def test_a_parser_that_crashes_fails_its_document_and_the_worker_carries_on(
    celery_worker, wait_for_document, staff, roles
):
    finance, _ = roles
    client = factories.api_client(staff)
    pool_before = _pool_processes(celery_worker)
    slow = upload(client, "slow.md", fb.make_slow_markdown(8 * MB)).json()["id"]
    good = upload(client, "after.md", b"# After\n\nThe Plover count is 12.").json()["id"]
    wait_for_document(slow, "processing")

    deadline = time.monotonic() + 60
    while not (children := _parse_children(celery_worker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children, "the parse never ran in a child process"
    for child in children:
        os.kill(child.pid, signal.SIGSEGV)

    document = wait_for_document(slow, "ready", "failed")
    assert document.status == "failed"
    assert document.error.startswith("The parser crashed on this file (it was killed by SIGSEGV)")
    assert wait_for_document(good, "ready", "failed").status == "ready"
    assert _pool_processes(celery_worker) == pool_before  # the worker was never replaced
    assert "12" in _hits(factories.user(roles=[finance]), "Plover count")[0].text


def _parse_children(worker) -> list:
    return [p for p in worker.pool_children() if "knowledge.ingestion.sandbox" in _cmdline(p)]


def _pool_processes(worker) -> list[int]:
    return sorted(
        p.pid
        for p in worker.pool_children()
        if "knowledge.ingestion.sandbox" not in _cmdline(p)  # parse children and the spare
    )


def _cmdline(process) -> list[str]:
    import psutil

    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def test_a_document_whose_runs_keep_dying_is_failed_after_the_attempt_limit(roles, settings):
    """Each delivery of a document still "processing" follows a run that never finished (its
    worker died); the task is called here directly, as each redelivery would call it."""
    finance, _ = roles
    data = b"# Osprey\n\nThe Osprey code is delta-four."
    document = services.document_create(
        title="Osprey",
        roles=[finance],
        original_filename="osprey.md",
        size_bytes=len(data),
        content_hash=hashlib.sha256(data).hexdigest(),
    )
    document.file.save("osprey.md", ContentFile(data))
    limit = settings.INGEST_MAX_ATTEMPTS
    assert limit == 3

    def died_after(attempts: int, **fields) -> None:
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.PROCESSING, ingest_attempts=attempts, **fields
        )

    died_after(limit - 1)
    assert ingest_document(document.pk) == "indexed"  # the last attempt allowed still runs
    document.refresh_from_db()
    assert (document.status, document.ingest_attempts) == ("ready", limit)

    died_after(limit, indexed_hash="")
    assert ingest_document(document.pk) == "gave up"
    document.refresh_from_db()
    assert document.status == "failed"
    assert document.error.startswith(
        f"Gave up after {limit} attempts: the parser crashed or ran out of memory or time"
    )
    assert document.chunk_count > 0  # the version indexed before stays searchable
    # A stray copy of the task (the sweep's) neither runs again nor rewrites the reason.
    assert ingest_document(document.pk) == "gave up"
    assert Document.objects.get(pk=document.pk).error == document.error

    # A re-ingest asked for by a user starts the count again.
    died_after(limit, indexed_hash="")
    from unittest import mock

    with mock.patch("knowledge.services._enqueue_ingest"):
        services.document_reingest(actor=operator(label="test"), document=document)
    assert ingest_document(document.pk) == "indexed"
    document.refresh_from_db()
    assert (document.status, document.ingest_attempts) == ("ready", 1)
