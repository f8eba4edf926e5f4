"""Rebuilding the HNSW index on a live table: the new parameters take effect, the index is
valid and used, searches answer the same before and after, and a build interrupted earlier
does not stop the next one."""

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.selectors import user_scope
from knowledge.retrieval import chunk_search
from knowledge.retrieval.vector_index import (
    INDEX,
    NEW_INDEX,
    index_definition,
    rebuild_vector_index,
    vector_index_options,
)
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)  # CONCURRENTLY needs no transaction


@pytest.fixture
def reader():
    role = factories.role("ops")
    factories.indexed_document(
        title="Runway lights",
        text="# Lights\n\nRunway edge lights are checked every night.\n\n# Brakes\n\n"
        "Brake wear pins are measured at every A-check.",
        roles=[role],
    )
    return factories.user(roles=[role])


def _hits(user):
    return [h.chunk_id for h in chunk_search(scope=user_scope(user=user), query="brake wear")]


def test_the_migrated_index_has_the_model_parameters():
    assert vector_index_options() == {"m": "16", "ef_construction": "128"}


def test_a_rebuild_swaps_in_a_valid_index_with_the_new_parameters(reader):
    before = _hits(reader)

    build = rebuild_vector_index(ef_construction=40, memory="96MB", workers=0)

    assert vector_index_options() == {"m": "16", "ef_construction": "40"}
    assert (build.ef_construction, build.maintenance_work_mem, build.workers) == (40, "96MB", 0)
    assert build.size_bytes > 0 and build.seconds >= 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c"
            " ON c.oid = i.indexrelid WHERE i.indrelid = 'knowledge_chunk'::regclass"
            " AND c.relname LIKE 'chunk_embedding_hnsw%%'"
        )
        assert cursor.fetchall() == [(INDEX, True)]
        cursor.execute("SHOW maintenance_work_mem")  # the build's settings do not linger
        assert cursor.fetchone()[0] != "96MB"
    assert _hits(reader) == before
    rebuild_vector_index()  # back to the model's parameters for the tests that follow
    assert vector_index_options() == {"m": "16", "ef_construction": "128"}


def test_an_index_left_by_an_interrupted_build_is_replaced(reader):
    with connection.cursor() as cursor:  # what a cancelled CONCURRENTLY build leaves
        cursor.execute("CREATE INDEX " + index_definition(name=NEW_INDEX, ef_construction=32))
    rebuild_vector_index()
    assert vector_index_options() == {"m": "16", "ef_construction": "128"}
    assert _hits(reader)


def test_a_rebuild_inside_a_transaction_is_refused(reader):
    from django.db import transaction

    with transaction.atomic(), pytest.raises(RuntimeError, match="outside a transaction"):
        rebuild_vector_index()


def test_the_command_reports_time_size_and_settings(reader, capsys):
    call_command("reindex_vectors", "--memory", "32MB", "--workers", "0")
    out = capsys.readouterr().out
    assert out.startswith(f"{INDEX} rebuilt in ")
    assert "MiB (m=16, ef_construction=128, maintenance_work_mem=32MB, parallel workers=0)" in out


def _index_oid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::regclass::oid", [INDEX])
        return cursor.fetchone()[0]


def test_the_migration_keeps_an_index_already_built_its_way_and_drops_a_leftover(reader):
    import importlib

    migration = importlib.import_module("knowledge.migrations.0005_hnsw_ef_construction_128")
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX " + index_definition(name=NEW_INDEX, ef_construction=32))
    kept = _index_oid()

    migration._rebuild(128)  # a 1M-chunk index built by bench/retrieval.py is not rebuilt

    assert _index_oid() == kept
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [NEW_INDEX])
        assert cursor.fetchone() == (None,)

    migration._rebuild(64)  # backwards: the index is rebuilt with the old parameters
    assert _index_oid() != kept
    assert vector_index_options() == {"m": "16", "ef_construction": "64"}
    rebuild_vector_index()
