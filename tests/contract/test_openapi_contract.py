"""The OpenAPI schema is a contract: schemathesis generates requests from it (valid and
invalid) and checks every answer against it: no server error, only declared status codes,
bodies and headers as declared, valid requests accepted, invalid ones refused.

Bounded: EXAMPLES per operation, as a superuser; chat is left out (each answer runs the
model, which tests/chatbot covers). Derandomized, so CI runs the examples a local run did
(a random draw once failed only in CI); CONTRACT_EXAMPLES=500 explores further by hand.
"""

import os

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import openapi
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests import factories

EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "25"))
load_all_checks()
ALL_CHECKS = CHECKS.get_all()
# Rules a schema cannot state (a name must exist, a password must not be common) answer 400
# for schema-valid requests; on these operations a 400 to valid data must name only these
# fields (each operation's description states its rules), and any other refusal fails.
BUSINESS_RULES = {
    "POST /api/v1/documents/": {"roles", "file"},
    "PATCH /api/v1/documents/{document_id}/": {"roles", "file"},
    "POST /api/v1/users/": {"password", "roles"},
    "PATCH /api/v1/users/{user_id}/": {"password", "roles"},
    "PATCH /api/v1/roles/{role_id}/": {"managers"},
}


@pytest.fixture
def in_test_transaction():
    """Calls the WSGI app in this thread, inside the test's transaction: like Django's test
    client, keep the handler from closing the connection at the end of each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(db, in_test_transaction):
    from config.wsgi import application

    return openapi.from_wsgi("/api/v1/schema/?format=json", application)


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex="/chat/")


@pytest.fixture
def admin_headers(db):
    finance = factories.role("finance")
    factories.role("everyone")
    admin = factories.superuser("contract-admin")
    factories.user(username="ann", roles=[finance])
    factories.indexed_document(title="Travel", text="Travel policy: per diem 45.", roles=[finance])
    client = factories.api_client(admin)
    return {"Authorization": client._credentials["HTTP_AUTHORIZATION"]}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,
)
def test_the_api_keeps_its_schema(case, admin_headers):
    rules = BUSINESS_RULES.get(f"{case.method} {case.path}")
    if rules is None:
        case.call_and_validate(headers=admin_headers, checks=ALL_CHECKS)
        return
    checks = [check for check in ALL_CHECKS if check is not positive_data_acceptance]
    response = case.call_and_validate(headers=admin_headers, checks=checks)
    if case.meta.generation.mode is GenerationMode.POSITIVE and response.status_code == 400:
        refused = set(response.json().get("errors", {}))
        assert refused and refused <= rules, (
            f"a schema-valid request refused for {refused}, not only for the documented "
            f"rules on {sorted(rules)}: {response.json()}"
        )
