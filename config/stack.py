"""`make run`: start the embedded stack and every process in the Procfile; Ctrl-C stops all.

PostgreSQL and Redis run embedded under DATA_DIR unless DATABASE_URL / REDIS_URL are set.
The inference server is started unless INFERENCE_URL points at an external one.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from config import embedded

ROOT = embedded.BASE_DIR


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], check=True, cwd=ROOT)


def _procfile_processes() -> list[str]:
    names = ["web", "worker", "answers"]
    if not os.environ.get("INFERENCE_URL_EXTERNAL"):
        names.append("inference")
    procfile = (ROOT / "Procfile").read_text()
    available = {line.split(":", 1)[0] for line in procfile.splitlines() if ":" in line}
    return [n for n in names if n in available]


def _seed_demo_once() -> None:
    """Load the demo workspace on first start (unless DEMO=0); later, reprint its logins."""
    marker = embedded.data_dir() / "demo-seeded"
    if marker.exists():
        users = embedded.data_dir() / "demo-users.txt"
        if users.exists():
            print("Demo users (username password):\n" + users.read_text())
        return
    if os.environ.get("DEMO", "1") == "0":
        return
    _manage("seed_demo")
    marker.touch()


def main() -> int:
    os.environ["DATA_DIR"] = str(embedded.data_dir())
    os.environ.setdefault("PORT", "8000")
    os.environ.setdefault("INFERENCE_PORT", "8001")
    if os.environ.get("INFERENCE_URL"):
        os.environ["INFERENCE_URL_EXTERNAL"] = "1"
    started_database = not os.environ.get("DATABASE_URL")
    started_broker = not os.environ.get("REDIS_URL")
    try:
        embedded.configure_environment()
    except embedded.EmbeddedPostgresError as exc:
        print(f"make run: the embedded database cannot start.\n{exc}", file=sys.stderr)
        return 2
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    try:
        _manage("migrate", "--noinput", "-v", "0")
        _manage("collectstatic", "--noinput", "-v", "0")
        _manage("ensure_admin")
        _seed_demo_once()
        print(f"\n  Chatbot: http://127.0.0.1:{os.environ['PORT']}/   (Ctrl-C stops everything)\n")
        honcho = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "start",
                "-f",
                str(ROOT / "Procfile"),
                *_procfile_processes(),
            ],
            cwd=ROOT,
        )

        def forward(signum, frame):
            honcho.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)  # honcho gets Ctrl-C from the terminal too
        return honcho.wait()
    finally:
        root = embedded.data_dir()
        if started_broker:
            embedded.stop_redis(root=root)
        if started_database:
            embedded.stop_postgres(root=root)


if __name__ == "__main__":
    sys.exit(main())
