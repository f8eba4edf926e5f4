"""The web chat in a real Chromium against uvicorn, the real model and the test database."""

import re
from pathlib import Path

import pytest

from chatbot.models import Feedback
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.django_db(transaction=True)]

DEMO_POLICY = Path(__file__).resolve().parents[2] / (
    "knowledge/demo/content/travel-and-expenses-policy.md"
)
QUESTION = "What is the domestic daily meal per diem?"


@pytest.fixture
def employee():
    everyone = factories.role("everyone")
    factories.indexed_document(
        title="Travel and expenses policy", text=DEMO_POLICY.read_text(), roles=[everyone]
    )
    return factories.user(roles=[everyone], username="eve")


def test_ask_watch_the_stream_open_a_source_rate_and_come_back(
    web_server, chromium, employee, screenshot
):
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(90_000)

    page.goto(f"{web_server}/")
    assert "/accounts/login/" in page.url
    screenshot(page, "01-login")
    page.fill("#id_username", "eve")
    page.fill("#id_password", "pw-Secret-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{web_server}/")
    assert page.locator(".topbar-roles .chip").all_inner_texts() == ["everyone"]

    page.fill("#question", QUESTION)
    page.keyboard.press("Enter")
    # Text shows a checked sentence at a time (the SSE tests assert the order of events);
    # a one-sentence answer may arrive with its "done" event, so either state will do.
    page.wait_for_function(
        """() => { const all = document.querySelectorAll('#messages .msg-assistant');
                   const a = all.length && all[all.length - 1].querySelector('.msg-text');
                   return a && !a.querySelector('.typing') && a.textContent.trim().length > 0; }"""
    )
    screenshot(page, "02-streaming")
    answer = page.locator(".msg-assistant:not(.is-streaming)").last
    answer.locator(".citations button.cite").first.wait_for()
    assert "45" in answer.locator(".msg-text").inner_text()
    assert re.match(r"^/c/\d+/$", page.url.removeprefix(web_server))
    assert answer.locator(".scope .chip").all_inner_texts() == ["everyone"]
    screenshot(page, "03-answer")

    answer.locator(".citations button.cite").first.click()
    dialog = page.locator("#passage-dialog")
    dialog.wait_for(state="visible")
    assert "Travel and expenses policy" in dialog.locator("#passage-title").inner_text()
    page.wait_for_function(
        "() => document.getElementById('passage-text').textContent !== 'Loading…'"
    )
    assert "per diem" in dialog.locator("#passage-text").inner_text().lower()
    assert re.search(r"/api/v1/documents/\d+/file/$", page.get_attribute("#passage-file", "href"))
    screenshot(page, "04-source")
    page.keyboard.press("Escape")

    answer.locator(".fb-up").click()
    answer.locator(".fb-comment input").fill("Clear and cited")
    answer.locator(".fb-comment button").click()
    page.locator(".fb-status", has_text="Thanks for the feedback.").wait_for()
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment, feedback.user_id) == (
        "up",
        "Clear and cited",
        employee.id,
    )

    page.reload()
    assert page.locator(".msg-user .msg-text").inner_text() == QUESTION
    assert page.locator(".conversation-list a.active").inner_text() == QUESTION
    reloaded = page.locator(".msg-assistant").last
    assert reloaded.locator(".citations button.cite").count() >= 1
    assert reloaded.locator(".fb-up").get_attribute("aria-pressed") == "true"
    screenshot(page, "05-reloaded")

    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.add_cookies(context.cookies())
    mobile = phone.new_page()
    mobile.goto(page.url)
    assert mobile.locator(".msg-assistant .citations").is_visible()
    assert not mobile.locator("#sidebar").is_visible() or mobile.evaluate(
        "document.getElementById('sidebar').getBoundingClientRect().right <= 0"
    )
    screenshot(mobile, "06-phone")
    phone.close()
    context.close()


def test_a_user_without_documents_is_told_nothing_was_found(web_server, chromium):
    factories.user(roles=[factories.role("new-hires")], username="newbie")
    page = chromium.new_page()
    page.set_default_timeout(60_000)

    page.goto(f"{web_server}/accounts/login/")
    page.fill("#id_username", "newbie")
    page.fill("#id_password", "pw-Secret-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{web_server}/")
    page.fill("#question", "What is the per diem?")
    page.click("#send")

    page.locator(".msg-assistant .notice-info", has_text="Nothing found").wait_for()
    page.close()
