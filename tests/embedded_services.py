"""pytest plugin: the test session starts its own PostgreSQL + pgvector and Redis.

Loaded with -p before pytest-django reads the settings, so DATABASE_URL and REDIS_URL point
at servers that live in a temporary DATA_DIR for this session only. Set both variables to
run the suite against external servers instead.
"""

import os
from pathlib import Path

import pytest

_started: dict[str, Path] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return
    from config import embedded

    os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
    _started["root"] = embedded.start_scratch_stack(prefix="chatbot-test-")


def pytest_unconfigure(config):
    root = _started.pop("root", None)
    if root is not None:
        from config import embedded

        embedded.stop_scratch_stack(root)
