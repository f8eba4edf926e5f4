"""Property-based attack on the retrieval choke point: no chunk, title or canary leaks."""

import uuid

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.selectors import user_scope
from knowledge.retrieval import chunk_search, chunk_search_with_plan
from tests import factories

TOPICS = [
    "quarterly revenue and cash flow",
    "engine maintenance torque procedure",
    "parental leave and payroll",
    "contract litigation case",
    "travel per diem policy",
]

scenarios = st.fixed_dictionaries(
    {
        "n_roles": st.integers(min_value=1, max_value=4),
        "documents": st.lists(
            st.tuples(
                st.sets(st.integers(min_value=0, max_value=3), min_size=1, max_size=3),
                st.sampled_from(TOPICS),
                st.integers(min_value=1, max_value=3),  # paragraphs, so some docs have >1 chunk
            ),
            min_size=1,
            max_size=6,
        ),
        "user_roles": st.sets(st.integers(min_value=0, max_value=3), max_size=3),
        "k": st.integers(min_value=1, max_value=8),
        "query": st.sampled_from([*TOPICS, "canary", "what is the secret code"]),
    }
)


def _run_scenario(scenario):
    roles = [factories.role() for _ in range(scenario["n_roles"])]
    user_roles = {roles[i] for i in scenario["user_roles"] if i < len(roles)}
    user = factories.user(roles=user_roles)
    visible_canaries, hidden_canaries, hidden_titles = set(), set(), set()
    visible_chunks = 0
    for role_indexes, topic, paragraphs in scenario["documents"]:
        doc_roles = {roles[i % len(roles)] for i in role_indexes}
        canary = f"canary{uuid.uuid4().hex[:12]}"
        title = f"Doc {canary}"
        text = "\n\n".join(
            f"# Section {p}\n\nThe secret code {canary} concerns {topic}. " + ("Filler. " * 150)
            for p in range(paragraphs)
        )
        document = factories.indexed_document(title=title, text=text, roles=doc_roles)
        if doc_roles & user_roles:
            visible_canaries.add(canary)
            visible_chunks += document.chunk_count
        else:
            hidden_canaries.add(canary)
            hidden_titles.add(title)

    hits = chunk_search(scope=user_scope(user=user), query=scenario["query"], k=scenario["k"])

    assert len(hits) == min(scenario["k"], visible_chunks)
    for hit in hits:
        blob = f"{hit.title} {hit.text} {hit.heading}"
        assert hit.title not in hidden_titles
        assert not any(c in blob for c in hidden_canaries)
        assert any(c in blob for c in visible_canaries)


@pytest.mark.django_db
@pytest.mark.parametrize("threshold", [0, 10**9], ids=["hnsw-plan", "exact-plan"])
def test_search_never_returns_out_of_scope_chunks(threshold):
    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(scenario=scenarios)
    def run(scenario):
        with transaction.atomic():
            _run_scenario(scenario)
            transaction.set_rollback(True)

    with override_settings(RETRIEVAL_EXACT_THRESHOLD=threshold):
        run()


@pytest.mark.django_db
def test_hnsw_plan_falls_back_to_exact_when_the_acl_filters_the_index_scan_away():
    common, rare = factories.role("common"), factories.role("rare")
    for i in range(60):
        factories.indexed_document(
            title=f"Common {i}", text=f"Travel policy paragraph number {i}.", roles=[common]
        )
    factories.indexed_document(title="Rare", text="The rare board memo.", roles=[rare])
    reader = factories.user(roles=[rare])

    with override_settings(RETRIEVAL_EXACT_THRESHOLD=0):
        hits, plan = chunk_search_with_plan(
            scope=user_scope(user=reader), query="travel policy", k=5
        )

    assert [h.title for h in hits] == ["Rare"]
    assert plan.name in {"hnsw", "hnsw+exact-fallback"}
