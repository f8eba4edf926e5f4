"""Row-level security on knowledge_chunk: the database's own copy of the role check.

See knowledge/row_security.py. Two permissive policies (OR'ed):

- chunk_read_in_scope: SELECT sees rows whose allowed_roles overlap app.user_roles; with the
  setting absent or empty the comparison is NULL and no row is visible (fails closed);
- chunk_maintenance: anything, only while app.chunk_maintenance is 'on'.

The settings are read once per statement (scalar subqueries become init plans), not once
per row. FORCE makes the policies bind the table's owner too; superusers and BYPASSRLS
roles are never bound (PostgreSQL's rule), which is why the application connects as a
plain role in production and in the tests.
"""

from django.db import migrations

ENABLE = """
ALTER TABLE knowledge_chunk ENABLE ROW LEVEL SECURITY;
ALTER TABLE knowledge_chunk FORCE ROW LEVEL SECURITY;
CREATE POLICY chunk_read_in_scope ON knowledge_chunk FOR SELECT
    USING (allowed_roles && (SELECT NULLIF(current_setting('app.user_roles', true), '')::int[]));
CREATE POLICY chunk_maintenance ON knowledge_chunk FOR ALL
    USING ((SELECT current_setting('app.chunk_maintenance', true)) = 'on')
    WITH CHECK ((SELECT current_setting('app.chunk_maintenance', true)) = 'on');
"""

DISABLE = """
DROP POLICY IF EXISTS chunk_maintenance ON knowledge_chunk;
DROP POLICY IF EXISTS chunk_read_in_scope ON knowledge_chunk;
ALTER TABLE knowledge_chunk NO FORCE ROW LEVEL SECURITY;
ALTER TABLE knowledge_chunk DISABLE ROW LEVEL SECURITY;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0003_document_ingest_attempts"),
    ]

    operations = [migrations.RunSQL(ENABLE, DISABLE)]
