"""The fault tests' own stack, so that stopping or killing a part never disturbs the servers
the rest of the suite shares: a scratch PostgreSQL (the application connects as a plain
role, as in production) and Redis, the model server, a Celery worker running beat (the
sweep that re-enqueues lost documents) and the web process under uvicorn. Each part is a
real process that a test can stop, kill and start again.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from config import embedded
from tests.processes import free_port, http_answers, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN_HEADER = "Authorization"


class Server:
    """One process of the stack. ``ready`` is polled until the process answers."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        env: dict,
        log_path: Path,
        timeout: float,
        ready: Callable[[], bool] | None = None,
        ready_line: bytes = b"",
        preexec_fn: Callable[[], None] | None = None,
    ):
        self.name, self.command, self.env, self.log_path = name, command, env, log_path
        self.timeout, self.ready, self.ready_line = timeout, ready, ready_line
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self.preexec_fn,
            )

    def is_ready(self) -> bool:
        if self.ready_line:
            return self.ready_line in self.log_path.read_bytes()[self._log_offset :]
        return self.ready is None or self.ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.is_ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log_path.read_bytes()[self._log_offset :].decode(errors="replace")
                state = "exited early" if self.process.poll() is not None else "not ready"
                raise RuntimeError(f"{self.name} {state}:\n{log[-4000:]}")
            time.sleep(0.2)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_bytes()[self._log_offset :].decode(errors="replace")


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _limit_file_size(max_bytes: int) -> Callable[[], None]:
    """For preexec_fn: files the process writes stop at max_bytes (EFBIG, as on a full disk).
    SIGXFSZ is ignored so the write fails with an OSError instead of killing the process."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


class FaultStack:
    def __init__(self, *, model_dir: Path):
        self.root = Path(tempfile.mkdtemp(prefix="chatbot-faults-"))
        self.model_dir = model_dir
        self.media_root = self.root / "media"
        self.servers: list[Server] = []

    # --- lifecycle

    def start(self) -> None:
        from config.db_roles import app_role_url

        self.admin_url = embedded.start_postgres(root=self.root)
        app_url = app_role_url(self.admin_url, password=secrets.token_urlsafe(16), createdb=True)
        with psycopg.connect(app_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE faults")
        self.database_url = _with_database(app_url, "faults")
        self.inspect_url = _with_database(self.admin_url, "faults")  # past row-level security
        self.redis_port = free_port()
        self.redis_url = embedded.start_redis(root=self.root, port=self.redis_port, persist=False)

        inference_port, web_port = free_port(), free_port()
        self.inference_url = f"http://127.0.0.1:{inference_port}"
        self.web_url = f"http://127.0.0.1:{web_port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATA_DIR": str(self.root),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "INFERENCE_URL": self.inference_url,
            "INFERENCE_MODEL": str(self.model_dir),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            # A request waiting for a database connection gives up after 3 s (not 10), so
            # the outage test is quick; the sweep runs every 2 s instead of every minute.
            "DB_POOL_TIMEOUT": "3",
            "INGEST_SWEEP_INTERVAL_SECONDS": "2",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("DATABASE_ADMIN_URL", None)
        self.env = env

        self.model = self._server(
            "model server",
            [
                sys.executable,
                "-m",
                "inference.server",
                "--port",
                str(inference_port),
                "--model-dir",
                str(self.model_dir),
                "--log-level",
                "warning",
            ],
            ready=http_answers(f"{self.inference_url}/health"),
            timeout=300,
        )
        self.model.spawn()  # the slowest part loads while the database is migrated
        self._migrate_and_seed()
        self.worker = self._server(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "ingest",
                "-c",
                "1",
                "-B",
                "-s",
                str(self.root / "celerybeat-schedule"),
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"faults-{os.getpid()}@%h",
            ],
            ready_line=b" ready.",
            timeout=90,
        )
        self.web = self.web_server(port=web_port)
        for server in (self.worker, self.web):
            server.spawn()
        for server in (self.worker, self.web, self.model):
            server.wait_ready()

    def web_server(self, *, port: int, env: dict | None = None, preexec_fn=None) -> Server:
        base = f"http://127.0.0.1:{port}"
        return self._server(
            f"web on {port}",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            env=env,
            ready=http_answers(f"{base}/accounts/login/", status=None),
            timeout=90,
            preexec_fn=preexec_fn,
        )

    def web_on_a_full_disk(self, *, max_file_bytes: int, tmp_dir: Path) -> tuple[Server, str]:
        """A second web process on this stack whose every file write stops at
        max_file_bytes, with its temporary upload files under tmp_dir."""
        port = free_port()
        server = self.web_server(
            port=port,
            env={**self.env, "TMPDIR": str(tmp_dir)},
            preexec_fn=_limit_file_size(max_file_bytes),
        )
        return server, f"http://127.0.0.1:{port}"

    def _server(self, name: str, command: list[str], *, env: dict | None = None, **kwargs):
        slug = name.replace(" ", "-")
        server = Server(
            name, command, env=env or self.env, log_path=self.root / f"{slug}.log", **kwargs
        )
        self.servers.append(server)
        return server

    def _migrate_and_seed(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "tests.faults.seed"],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise RuntimeError(f"seeding the fault stack failed:\n{result.stderr[-4000:]}")
        seeded = json.loads(result.stdout.strip().splitlines()[-1])
        self.username, self.password = seeded["username"], seeded["password"]
        self.token = seeded["token"]

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        embedded.stop_redis(root=self.root)
        embedded.stop_postgres(root=self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def ensure_running(self) -> None:
        """Put back whatever a test left stopped (a failed test must not fail the next)."""
        if not self.redis_running():
            self.start_redis()
        if not self.postgres_running():
            self.start_postgres()
        for server in (self.model, self.worker, self.web):
            if not server.running:
                server.start()

    # --- the faults

    def stop_redis(self) -> None:
        embedded.stop_redis(root=self.root)
        assert not self.redis_running()

    def start_redis(self) -> None:
        embedded.start_redis(root=self.root, port=self.redis_port, persist=False)

    def redis_running(self) -> bool:
        return embedded._port_open(self.redis_port)

    def _pg_ctl(self, *args: str) -> None:
        embedded.pg_ctl(["-w", *args], pgdata=self.root / "pg")

    def stop_postgres(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start_postgres(self) -> None:
        # restart on a stopped cluster starts it with the options it last ran with.
        self._pg_ctl("-l", str(self.root / "pg" / "log"), "restart")

    def postgres_running(self) -> bool:
        return (self.root / "pg" / "postmaster.pid").exists()

    # --- looking at it

    def client(self, base_url: str | None = None, *, timeout: float = 120) -> httpx.Client:
        return httpx.Client(
            base_url=base_url or self.web_url,
            headers={TOKEN_HEADER: f"Token {self.token}"},
            timeout=timeout,
        )

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """What the database holds, read as its superuser (past row-level security)."""
        with psycopg.connect(self.inspect_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def stored_files(self) -> set[Path]:
        if not self.media_root.exists():
            return set()
        return {p.relative_to(self.media_root) for p in self.media_root.rglob("*") if p.is_file()}


def events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """The server-sent events of a streamed response, as they arrive."""
    name, data = None, None
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data = json.loads(line[len("data:") :])
        elif not line and name is not None:
            yield name, data
            name, data = None, None
    if name is not None:
        yield name, data
