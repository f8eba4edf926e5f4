"""Slack tests: requests signed with slack_sdk, Slack's Web API stood in for by
tests/slack_standin.py (fixtures fake_slack and fake_slack_server in tests/conftest.py);
answers written by a real `celery worker -Q answers` with the real model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.processes import session_database_url, stop_process, wait_until
from tests.slack_standin import (  # noqa: F401  (the Slack tests import these from here)
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    event_body,
    post_event,
    post_signed,
    post_slash,
    signed_headers,
    slash_body,
)


@pytest.fixture(scope="session")
def answer_worker(
    django_db_setup,
    django_db_blocker,
    fake_slack_server,
    inference_url,
    model_dir,
    tmp_path_factory,
):
    """A real `celery worker -Q answers` (threads), on the test database, the test model
    server and the stand-in Slack."""
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "INFERENCE_URL": inference_url,
        "INFERENCE_MODEL": str(model_dir),
        "SLACK_API_URL": fake_slack_server.api_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_RESPONSE_URL_HOSTS": "127.0.0.1",
        "PUBLIC_URL": "http://chat.example.test",
    }
    log_path = tmp_path_factory.mktemp("answers") / "worker.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "answers",
            "-P", "threads", "-c", "2", "-l", "info", "--without-gossip", "--without-mingle",
            "-n", f"answers-{os.getpid()}@%h",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(
            lambda: b" ready." in log_path.read_bytes(),
            process=process,
            log_path=log_path,
            timeout=90,
            what="answers worker",
        )
        yield log_path
    finally:
        stop_process(process)
        log.close()
