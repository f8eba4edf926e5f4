import time

import pytest

from tests.faults.stack import FaultStack

HOTEL_TEXT = (
    "# Travel policy\n\n"
    "Hotel costs are reimbursed up to 140 EUR per night in Germany and 180 EUR per night "
    "in London. Breakfast is included. Book hotels through the travel desk, and keep every "
    "receipt: claims without receipts are refused.\n"
)


@pytest.fixture(scope="module")
def stack(model_dir):
    """The module's own stack (see tests/faults/stack.py), with the travel policy indexed."""
    stack = FaultStack(model_dir=model_dir)
    try:
        stack.start()
        document_id = upload(stack, "travel-policy.md", HOTEL_TEXT.encode()).json()["id"]
        wait_for_status(stack, document_id, "ready")
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _stack_restored(stack):
    """Each test starts on a whole stack, whatever the previous one stopped or killed."""
    stack.ensure_running()
    yield
    stack.ensure_running()


def upload(stack, name: str, data: bytes, *, base_url: str | None = None):
    with stack.client(base_url) as client:
        return client.post(
            "/api/v1/documents/", files={"file": (name, data)}, data={"roles": "staff"}
        )


def document_status(stack, document_id: int) -> tuple[str, int] | None:
    rows = stack.sql(
        "SELECT status, chunk_count FROM knowledge_document WHERE id = %s", (document_id,)
    )
    return rows[0] if rows else None


def wait_for_status(stack, document_id: int, status: str, *, timeout: float = 120) -> int:
    """Waits until the document has ``status``; returns its stored chunk count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = document_status(stack, document_id)
        if state is not None and state[0] == status:
            return state[1]
        time.sleep(0.3)
    raise AssertionError(f"document {document_id} never became {status}: {state}")
