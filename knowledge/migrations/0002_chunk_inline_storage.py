from django.db import migrations


class Migration(migrations.Migration):
    """Keep a chunk's embedding, text and tsvector inline in its heap row.

    By default PostgreSQL moves values to TOAST once a row passes 2 kB, and a chunk row
    (1.5 kB vector + text + tsvector) nearly always does: every exact vector scan and every
    full-text ranking then reads each value through the TOAST index (~4-5x the buffer reads,
    measured by bench/retrieval.py). PLAIN pins the vector in the row, and a toast target
    near the page size keeps text and tsvector inline (compressed only past ~8 kB).
    """

    dependencies = [("knowledge", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE knowledge_chunk ALTER COLUMN embedding SET STORAGE PLAIN",
            "ALTER TABLE knowledge_chunk ALTER COLUMN embedding SET STORAGE EXTERNAL",
        ),
        migrations.RunSQL(
            "ALTER TABLE knowledge_chunk SET (toast_tuple_target = 8160)",
            "ALTER TABLE knowledge_chunk RESET (toast_tuple_target)",
        ),
    ]
