import pytest
from django.test import override_settings

from accounts import services as account_services
from accounts.policy import operator
from accounts.selectors import user_scope
from knowledge import services
from knowledge.retrieval import chunk_search, chunk_search_with_plan
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def corpus():
    finance, ops = factories.role("finance"), factories.role("operations")
    report = factories.indexed_document(
        title="Q3 report", text="# Results\n\nQ3 revenue was 4.2 million euros.", roles=[finance]
    )
    manual = factories.indexed_document(
        title="Torque manual",
        text="# Landing gear\n\nTighten the axle nut to 45 Nm.",
        roles=[ops],
    )
    return finance, ops, report, manual


def _titles(user, query="revenue torque axle"):
    return {hit.title for hit in chunk_search(scope=user_scope(user=user), query=query, k=10)}


def test_each_user_sees_only_their_roles(corpus):
    finance, ops, *_ = corpus
    assert _titles(factories.user(roles=[finance])) == {"Q3 report"}
    assert _titles(factories.user(roles=[ops])) == {"Torque manual"}
    assert _titles(factories.user(roles=[finance, ops])) == {"Q3 report", "Torque manual"}


def test_user_without_roles_gets_nothing(corpus):
    assert chunk_search(scope=user_scope(user=factories.user()), query="revenue", k=5) == []


def test_role_change_applies_to_the_next_query(corpus):
    finance, *_ = corpus
    user = factories.user(roles=[finance])
    assert _titles(user) == {"Q3 report"}

    account_services.user_update(actor=operator(label="test"), user=user, role_names=["operations"])
    assert _titles(user) == {"Torque manual"}

    account_services.user_update(actor=operator(label="test"), user=user, role_names=[])
    assert chunk_search(scope=user_scope(user=user), query="revenue torque", k=5) == []


def test_rescoping_a_document_applies_to_the_next_query(corpus):
    finance, ops, report, _ = corpus
    finance_user, ops_user = factories.user(roles=[finance]), factories.user(roles=[ops])

    services.document_set_roles(document=report, roles=[ops])

    assert _titles(finance_user) == set()
    assert _titles(ops_user) == {"Q3 report", "Torque manual"}
    assert [factories.chunk_roles(c) for c in factories.stored_chunks(document=report)] == [
        [ops.pk]
    ] * report.chunk_count


def test_deleting_a_role_revokes_access_to_its_documents(corpus):
    finance, ops, report, _ = corpus
    services.document_set_roles(document=report, roles=[finance, ops])
    finance_user = factories.user(roles=[finance])
    assert "Q3 report" in _titles(finance_user)

    account_services.role_delete(actor=operator(label="test"), role=finance)

    assert _titles(finance_user) == set()
    assert "Q3 report" in _titles(factories.user(roles=[ops]))


def test_inactive_user_gets_nothing(corpus):
    finance, *_ = corpus
    user = factories.user(roles=[finance])
    user.is_active = False
    user.save()
    assert chunk_search(scope=user_scope(user=user), query="revenue", k=5) == []


def test_hybrid_search_finds_an_exact_part_number_the_vector_leg_ranks_low():
    ops = factories.role("operations")
    filler = [
        "Hydraulic pump inspection checklist for the landing gear.",
        "Replace the hydraulic pump seal kit during the A-check.",
        "The hydraulic pump pressure must stay within limits.",
        "Inspect the hydraulic pump mounting bolts for corrosion.",
        "Hydraulic pump removal and installation procedure.",
        "Log every hydraulic pump replacement in the tech log.",
    ]
    for i, text in enumerate(filler):
        factories.indexed_document(title=f"Pump note {i}", text=text, roles=[ops])
    target = factories.indexed_document(
        title="Parts bulletin",
        text="Supplier bulletin: order kit HX-99731-Q from the central store.",
        roles=[ops],
    )
    user = factories.user(roles=[ops])
    query = "hydraulic pump part HX-99731-Q"

    vector_only, _ = chunk_search_with_plan(
        scope=user_scope(user=user), query=query, k=3, vector_only=True
    )
    hybrid = chunk_search(scope=user_scope(user=user), query=query, k=3)

    assert target.pk not in [h.document_id for h in vector_only]
    assert hybrid[0].document_id == target.pk


def test_search_returns_headings_and_scores():
    ops = factories.role("operations")
    factories.indexed_document(
        title="Manual", text="# Wheels\n\n## Torque\n\nTighten to 45 Nm.", roles=[ops]
    )
    (hit,) = chunk_search(scope=user_scope(user=factories.user(roles=[ops])), query="torque", k=5)
    assert hit.heading == "Wheels > Torque"
    assert hit.score > 0


@override_settings(RETRIEVAL_EXACT_THRESHOLD=0)
def test_hnsw_plan_returns_min_k_visible_rows():
    role = factories.role("big")
    for i in range(30):
        factories.indexed_document(title=f"Doc {i}", text=f"Policy clause {i}.", roles=[role])
    hits, plan = chunk_search_with_plan(
        scope=user_scope(user=factories.user(roles=[role])), query="policy", k=7
    )
    assert len(hits) == 7
    assert plan.name.startswith("hnsw")


def test_hits_carry_their_similarity_to_the_question():
    role = factories.role("ops")
    factories.indexed_document(
        title="Torque", text="Tighten the propeller blade bolts to 85 Nm.", roles=[role]
    )
    factories.indexed_document(title="Menu", text="Soup of the day is tomato.", roles=[role])
    hits = chunk_search(
        scope=user_scope(user=factories.user(roles=[role])),
        query="propeller blade bolt torque",
        k=5,
    )
    by_title = {h.title: h.similarity for h in hits}
    assert by_title["Torque"] > 0.5 > by_title["Menu"]
