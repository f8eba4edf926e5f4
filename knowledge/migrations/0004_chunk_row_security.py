"""Row-level security on knowledge_chunk: the database's own copy of the role check.

See knowledge/row_security.py. Reading is one permissive SELECT policy, written so that
the GIN index on allowed_roles serves it (no OR in it, which would force a scan of the whole
table): a row is visible when its allowed_roles overlap app.user_roles. A user's scope holds
real role ids only; every stored row also carries role 0, which no user has, and index
maintenance reads with app.user_roles = {0}. With the setting absent or empty the comparison
is NULL and no row is visible (fails closed). The setting is read by current_setting() in
the policy itself, not through a sub-select: the planner then estimates the policy's
selectivity from the actual role ids (a sub-select is an unknown parameter at plan time, and
its default estimate made a search over most of the table pick an exact scan over HNSW).

Writing (INSERT, UPDATE, DELETE) needs app.chunk_maintenance = 'on', and a written row must
keep role 0; the write policies read that setting once per statement (a scalar sub-select
becomes an init plan). FORCE makes the policies bind the table's owner too; superusers and
BYPASSRLS roles are never bound (PostgreSQL's rule), which is why the application connects
as a plain role.
"""

from django.db import migrations

ENABLE = """
UPDATE knowledge_chunk SET allowed_roles = array_prepend(0, allowed_roles)
    WHERE NOT (0 = ANY(allowed_roles));
ALTER TABLE knowledge_chunk ENABLE ROW LEVEL SECURITY;
ALTER TABLE knowledge_chunk FORCE ROW LEVEL SECURITY;
CREATE POLICY chunk_read_in_scope ON knowledge_chunk FOR SELECT
    USING (allowed_roles && NULLIF(current_setting('app.user_roles', true), '')::int[]);
CREATE POLICY chunk_insert ON knowledge_chunk FOR INSERT
    WITH CHECK ((SELECT current_setting('app.chunk_maintenance', true)) = 'on'
                AND 0 = ANY(allowed_roles));
CREATE POLICY chunk_update ON knowledge_chunk FOR UPDATE
    USING ((SELECT current_setting('app.chunk_maintenance', true)) = 'on')
    WITH CHECK ((SELECT current_setting('app.chunk_maintenance', true)) = 'on'
                AND 0 = ANY(allowed_roles));
CREATE POLICY chunk_delete ON knowledge_chunk FOR DELETE
    USING ((SELECT current_setting('app.chunk_maintenance', true)) = 'on');
"""

DISABLE = """
DROP POLICY IF EXISTS chunk_delete ON knowledge_chunk;
DROP POLICY IF EXISTS chunk_update ON knowledge_chunk;
DROP POLICY IF EXISTS chunk_insert ON knowledge_chunk;
DROP POLICY IF EXISTS chunk_read_in_scope ON knowledge_chunk;
ALTER TABLE knowledge_chunk NO FORCE ROW LEVEL SECURITY;
ALTER TABLE knowledge_chunk DISABLE ROW LEVEL SECURITY;
UPDATE knowledge_chunk SET allowed_roles = array_remove(allowed_roles, 0);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0003_document_ingest_attempts"),
    ]

    operations = [migrations.RunSQL(ENABLE, DISABLE)]
