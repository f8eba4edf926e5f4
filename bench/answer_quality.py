"""Answer quality with and without an adapter, on every gold set, in one run.

    python bench/answer_quality.py [--adapters none,shipped,DIR] [--sets demo,holdout,...]

Uses the embedded stack under DATA_DIR (default ./var, as `make run`): starts an ingest
worker, loads the demo and the held-out workspaces (idempotent), waits until every document
is ingested, then for each adapter starts the bundled inference server with it and runs
`manage.py evaluate` on each set (stored runs: see /admin/evaluation-runs/). Prints each
evaluation's table as the command prints it, and a summary line per (adapter, set).

What the figures leave out: one question at a time, warm caches, greedy decoding (the same
code and data give the same answers), and latency shared with whatever else runs on the
machine.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = ("demo", "demo-paraphrase", "holdout")
FIGURES = (  # labels as `evaluate` prints them (evaluation.metrics.COLUMNS)
    "correct, any form",
    "correct, model's own words",
    "quoted instead of answered",
    "wrong answers shown (must be 0)",
    "answerable, said not found",
    "not-found correctness",
    "citation precision",
    "leaks (must be 0)",
    "first token p50 ms",
)


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def ingest_everything(env: dict) -> None:
    worker_log = open(Path(env["DATA_DIR"]) / "bench-worker.log", "w")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "ingest"),
            *("-c", "1", "-l", "warning", "--without-gossip", "--without-mingle"),
        ],
        cwd=ROOT,
        env=env,
        stdout=worker_log,
        stderr=worker_log,
    )
    try:
        manage("migrate", "-v0", env=env)
        manage("seed_demo", env=env)
        manage("seed_holdout", env=env)
        script = (
            "from knowledge.models import Document as D; "
            "print(D.objects.exclude(status__in=['ready', 'failed']).count())"
        )
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            left = manage("shell", "-c", script, env=env).stdout.strip().splitlines()[-1]
            if left == "0":
                return
            time.sleep(3)
        raise SystemExit("documents still ingesting after 15 minutes")
    finally:
        stop(worker)
        worker_log.close()


def evaluate(adapter: str, sets: list[str], env: dict) -> list[tuple[str, str, str]]:
    port = free_port()
    log = open(Path(env["DATA_DIR"]) / f"bench-inference-{port}.log", "w")  # noqa: SIM115
    command = [sys.executable, "-m", "inference.server", "--port", str(port)]
    command += ["--adapter", "" if adapter == "shipped" else adapter]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 600, server)
        run_env = {**env, "INFERENCE_URL": f"http://127.0.0.1:{port}"}
        for name in sets:
            label = f"adapter {adapter}"
            done = manage("evaluate", "--set", name, "--label", label, "--no-progress", env=run_env)
            print(f"\n## {name}, {label}\n{done.stdout}", flush=True)
            rows.append((adapter, name, done.stdout))
    finally:
        stop(server)
        log.close()
    return rows


def figure(table: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}\s+(\S+)\s*$", table, re.MULTILINE)
    return match.group(1) if match else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", default="none,shipped")
    parser.add_argument("--sets", default=",".join(SETS))
    args = parser.parse_args()
    os.environ["DATA_DIR"] = os.environ.get("DATA_DIR") or str(ROOT / "var")
    sys.path.insert(0, str(ROOT))
    from config import embedded

    embedded.configure_environment()  # the embedded database and Redis, as make run starts
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ingest_everything(env)
    sets = [s for s in args.sets.split(",") if s]
    rows = []
    for adapter in [a for a in args.adapters.split(",") if a]:
        rows += evaluate(adapter, sets, env)
    print("\nadapter | set | " + " | ".join(FIGURES))
    for adapter, name, table in rows:
        print(f"{adapter} | {name} | " + " | ".join(figure(table, f) for f in FIGURES))


if __name__ == "__main__":
    main()
