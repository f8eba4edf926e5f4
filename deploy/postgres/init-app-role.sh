#!/usr/bin/env bash
# The application's database role and database, made once by the database superuser.
#
# The pgvector/pgvector image runs this (mounted into /docker-entrypoint-initdb.d) on the
# first start of an empty data volume, as POSTGRES_USER. It creates:
#   - APP_DB_USER (default chatbot), a login role that is NOT a superuser, cannot create
#     roles or databases and does not bypass row-level security: PostgreSQL applies the
#     chunk table's policies (FORCE ROW LEVEL SECURITY) to it, never to a superuser;
#   - APP_DB_NAME (default chatbot), owned by that role, so its migrations own every table;
#   - the vector extension in that database (pgvector is not a trusted extension, so the
#     application role could not create it; the migration's CREATE EXTENSION IF NOT EXISTS
#     then does nothing).
# Running it again (e.g. by hand against an existing cluster) changes nothing but resets the
# role's attributes and password. The password is read from the environment, never passed
# on a command line.
set -euo pipefail

export APP_DB_USER="${APP_DB_USER:-chatbot}"
export APP_DB_NAME="${APP_DB_NAME:-chatbot}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD must be set (the password of the application role)}"
export APP_DB_PASSWORD
superuser="${POSTGRES_USER:-postgres}"

if [[ "$APP_DB_USER" == "$superuser" ]]; then
    echo "init-app-role: APP_DB_USER must differ from POSTGRES_USER ($superuser)" >&2
    exit 1
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$superuser" \
    --dbname "${POSTGRES_DB:-postgres}" <<'SQL'
\getenv app_user APP_DB_USER
\getenv app_password APP_DB_PASSWORD
\getenv app_db APP_DB_NAME
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format(
    'ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
    'PASSWORD %L', :'app_user', :'app_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'app_db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'app_db', :'app_user') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app_db') \gexec
SQL

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$superuser" --dbname "$APP_DB_NAME" <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
SQL

echo "init-app-role: role \"$APP_DB_USER\" owns database \"$APP_DB_NAME\" (with pgvector)"
