"""The demo workspace loads through the real pipeline and answers its facts by role."""

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from accounts.selectors import user_scope
from knowledge import demo
from knowledge.models import Document
from knowledge.retrieval import chunk_search

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_seed_demo_is_idempotent_and_scoped(celery_worker, wait_for_document):
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert f"{len(demo.documents())} documents queued" in out.getvalue()
    for document in Document.objects.all():
        ready = wait_for_document(document.pk, "ready", "failed", timeout=180)
        assert ready.status == "ready", (ready.title, ready.error)

    again = StringIO()
    call_command("seed_demo", stdout=again)
    assert "0 documents queued" in again.getvalue()
    assert Document.objects.count() == len(demo.documents())
    for spec in demo.USERS:  # passwords printed at start are the ones that work
        line = next(line for line in again.getvalue().splitlines() if spec["username"] in line)
        assert User.objects.get(username=spec["username"]).check_password(line.split()[1])

    everyone_only = User.objects.get(username="eve_employee")
    for question, (expected, role) in demo.FACTS.items():
        reader = next(u for u in User.objects.filter(roles__name=role))
        texts = " ".join(
            h.text for h in chunk_search(scope=user_scope(user=reader), query=question, k=5)
        )
        assert expected in texts, question
        if role != "everyone":
            hidden = " ".join(
                h.text
                for h in chunk_search(scope=user_scope(user=everyone_only), query=question, k=10)
            )
            assert expected not in hidden, question
