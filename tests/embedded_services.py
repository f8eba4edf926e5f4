"""pytest plugin: the test session starts its own PostgreSQL + pgvector and Redis.

Loaded with -p before pytest-django reads the settings, so DATABASE_URL and REDIS_URL point
at servers that live in a temporary DATA_DIR for this session only. DATABASE_URL names a
plain role (config.db_roles), not the cluster's superuser; DATABASE_ADMIN_URL names the
superuser. Set both variables to
run the suite against external servers instead.
"""

import os
import secrets
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
    # The application (this process, and the worker and web processes the tests start)
    # connects as a plain role, as in production, so row-level security binds every test;
    # the superuser's URL stays at hand for the tests that administer the cluster.
    from config.db_roles import app_role_url

    admin_url = os.environ["DATABASE_URL"]
    os.environ["DATABASE_ADMIN_URL"] = admin_url
    os.environ["DATABASE_URL"] = app_role_url(
        admin_url, password=secrets.token_urlsafe(16), createdb=True
    )


def pytest_unconfigure(config):
    root = _started.pop("root", None)
    if root is not None:
        from config import embedded

        embedded.stop_scratch_stack(root)
