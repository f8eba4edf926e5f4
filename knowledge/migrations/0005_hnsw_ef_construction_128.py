from django.db import migrations
from pgvector.django import HnswIndex


def _rebuild(ef_construction: int) -> None:
    from knowledge.retrieval import vector_index

    # An index already built this way (by reindex_vectors, or bench/retrieval.py) is kept.
    wanted = {"m": "16", "ef_construction": str(ef_construction)}
    if vector_index.vector_index_options() == wanted:
        vector_index.drop_interrupted_build()
    else:
        vector_index.rebuild_vector_index(ef_construction=ef_construction)


def rebuild(apps, schema_editor):
    _rebuild(128)


def rebuild_back(apps, schema_editor):
    _rebuild(64)


class Migration(migrations.Migration):
    """Rebuild the HNSW index with ef_construction = 128 (was pgvector's default, 64): at a
    million chunks the graph built at 64 kept recall@10 near 0.93 whatever ef_search a search
    used (docs/benchmarks.md). The new index is built CONCURRENTLY beside the live one and
    swapped in, so a deployment keeps searching while this runs (about ten minutes per
    million chunks on two cores; seconds for a few thousand)."""

    atomic = False
    dependencies = [("knowledge", "0004_chunk_row_security")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="chunk", name="chunk_embedding_hnsw"),
                migrations.AddIndex(
                    model_name="chunk",
                    index=HnswIndex(
                        fields=["embedding"],
                        m=16,
                        ef_construction=128,
                        name="chunk_embedding_hnsw",
                        opclasses=["vector_cosine_ops"],
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(rebuild, rebuild_back)],
        )
    ]
