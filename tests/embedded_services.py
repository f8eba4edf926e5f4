"""pytest plugin: the test session starts its own PostgreSQL + pgvector and Redis.

Loaded with -p before pytest-django reads the settings, so DATABASE_URL and REDIS_URL point
at servers that live in a temporary DATA_DIR for this session only. Set both variables to
run the suite against external servers instead.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_started: dict[str, Path] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return
    from config import embedded

    root = Path(tempfile.mkdtemp(prefix="chatbot-test-"))
    os.environ["DATA_DIR"] = str(root)
    os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
    os.environ["DATABASE_URL"] = embedded.start_postgres(root=root)
    _started["root"] = root
    os.environ["REDIS_URL"] = embedded.start_redis(
        root=root, port=embedded.free_port(), persist=False
    )


def pytest_unconfigure(config):
    root = _started.pop("root", None)
    if root is None:
        return
    from config import embedded

    embedded.stop_redis(root=root)
    embedded.stop_postgres(root=root)
    shutil.rmtree(root, ignore_errors=True)
