"""The held-out workspace renders in every format its catalogue names, every figure its gold
set expects survives rendering and parsing, and `seed_holdout` loads it through the real
pipeline, scoped by role; `evaluate --set holdout` without it says to run seed_holdout."""

from io import StringIO
from pathlib import PurePath

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Role, User
from accounts.selectors import user_scope
from evaluation import holdout
from evaluation.gold import load_gold_set
from evaluation.models import EvaluationRun
from knowledge.ingestion.parsers import parse_document
from knowledge.models import Document
from knowledge.retrieval import chunk_search


def test_the_holdout_documents_render_in_every_target_format():
    documents = holdout.documents()
    assert [d.data for d in documents] == [d.data for d in holdout.documents()]  # deterministic
    assert {PurePath(d.filename).suffix for d in documents} == {
        ".pdf", ".docx", ".html", ".txt", ".md",
    }  # fmt: skip
    parsed = {}
    for document, entry in zip(documents, holdout.CATALOGUE, strict=True):
        if document.filename.endswith(".txt"):
            document.data.decode(entry.encoding)
        result = parse_document(data=document.data, filename=document.filename)
        parsed[document.filename] = "\n".join(section.text for section in result.sections)
    for case in load_gold_set("holdout").cases:
        if not case.not_found:
            assert any(case.facts_in(parsed[name]) for name in case.cite), case.id


@pytest.mark.django_db
def test_evaluating_the_holdout_set_without_its_workspace_says_to_seed_it():
    with pytest.raises(CommandError, match=r"`python manage\.py seed_holdout`"):
        call_command("evaluate", "--set", "holdout", "--no-progress")
    assert not EvaluationRun.objects.exists()  # no run of errored cases scored as 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_seed_holdout_loads_roles_users_and_documents_scoped(celery_worker, wait_for_document):
    out = StringIO()
    call_command("seed_holdout", stdout=out)
    assert f"{len(holdout.CATALOGUE)} documents queued" in out.getvalue()
    assert set(Role.objects.values_list("name", flat=True)) >= set(holdout.role_names())
    for spec in holdout.USERS:
        user = User.objects.get(username=spec["username"])
        assert set(user.roles.values_list("name", flat=True)) == set(spec["roles"])
    for document in Document.objects.all():
        ready = wait_for_document(document.pk, "ready", "failed", timeout=180)
        assert ready.status == "ready", (ready.title, ready.error)
        expected = next(e for e in holdout.CATALOGUE if e.filename == ready.original_filename)
        assert set(ready.roles.values_list("name", flat=True)) == set(expected.roles)

    again = StringIO()
    call_command("seed_holdout", stdout=again)
    assert "0 documents queued" in again.getvalue()
    assert Document.objects.count() == len(holdout.CATALOGUE)
    for spec in holdout.USERS:  # the passwords printed are the ones that work
        line = next(line for line in again.getvalue().splitlines() if spec["username"] in line)
        assert User.objects.get(username=spec["username"]).check_password(line.split()[1])

    for case in load_gold_set("holdout").cases:
        if not case.user or case.history:
            continue
        scope = user_scope(user=User.objects.get(username=case.user))
        texts = " ".join(h.text for h in chunk_search(scope=scope, query=case.question, k=10))
        assert not case.leaks_in(texts), case.id  # another role's canaries stay out of reach
        if "identifier" in case.tags:  # and the asker's own documents are searchable
            assert case.facts_in(texts), case.id
