"""The chat page in a real browser against one real `chatlimit serve` process."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from ..support import ServedApp, ServeFactory
from .chatpage import ChatPage
from .conftest import PageProblems

pytestmark = [pytest.mark.browser, pytest.mark.integration]

XSS = "<img src=x onerror=alert(1)>"


def test_page_shows_the_mode_banner_and_a_full_quota(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    chat = ChatPage(page).open(single_app.url)
    expect(chat.mode).to_contain_text("Single process")
    expect(chat.mode).to_contain_text("Memory, per process")
    expect(chat.mode).to_contain_text("fixed-window")
    expect(chat.mode).to_contain_text("3 per 1 minute")
    expect(chat.quota).to_have_text("3 of 3 left")
    expect(chat.quota_reset).to_have_text("Nothing used in this window yet.")
    expect(chat.replica_panel).to_be_hidden()
    expect(chat.send_button).to_be_enabled()
    problems.assert_none()


def test_each_reply_has_a_replica_badge_and_the_meter_goes_down(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    chat = ChatPage(page).open(single_app.url)
    reply = chat.send("hello")
    expect(reply).to_contain_text("Hello! I'm the chatlimit demo bot.")
    expect(reply.locator(".badge")).to_have_text("solo")
    expect(chat.quota).to_have_text("2 of 3 left")
    expect(chat.quota_reset).to_have_text(re.compile(r"Resets in 0:[0-5]\d"))
    expect(page.locator("#quota-meter")).to_have_js_property("value", 2)

    chat.message.fill("tell me about redis")
    chat.send_button.click()
    expect(chat.replies).to_have_count(2)
    expect(chat.quota).to_have_text("1 of 3 left")
    assert chat.badges() == ["solo", "solo"]
    # The same replica name keeps the same colour.
    classes = chat.replies.locator(".badge").evaluate_all("els => els.map(e => e.className)")
    assert len(set(classes)) == 1
    expect(chat.message).to_be_focused()
    chat.screenshot("page-single")
    problems.assert_none()


def test_shift_enter_adds_a_new_line_and_enter_sends(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    chat = ChatPage(page).open(single_app.url)
    chat.message.press_sequentially("first line")
    chat.message.press("Shift+Enter")
    chat.message.press_sequentially("second line")
    expect(chat.message).to_have_value("first line\nsecond line")
    expect(chat.replies).to_have_count(0)
    chat.message.press("Enter")
    expect(chat.mine.locator(".msg-text")).to_have_text("first line\nsecond line")
    expect(chat.replies).to_have_count(1)
    expect(chat.message).to_have_value("")
    problems.assert_none()


def test_markup_in_a_message_shows_as_text_and_runs_nothing(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    chat = ChatPage(page).open(single_app.url)
    reply = chat.send(XSS)
    expect(chat.mine.locator(".msg-text")).to_have_text(XSS)
    expect(reply).to_contain_text(XSS)
    expect(page.locator("#messages img")).to_have_count(0)
    assert page.evaluate("document.images.length") == 0
    assert problems.dialogs == []
    problems.assert_none()


def test_at_the_limit_send_is_disabled_with_a_countdown_and_comes_back_by_itself(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    app = serve(RATE_LIMIT="2/5second")
    chat = ChatPage(page).open(app.url)
    chat.send("one")
    expect(chat.quota).to_have_text("1 of 2 left")
    chat.send("two")
    expect(chat.quota).to_have_text("0 of 2 left")
    expect(chat.limit).to_be_visible()
    expect(chat.limit).to_contain_text("You've used all 2 messages for now.")
    expect(chat.countdown).to_have_text(re.compile(r"0:0[1-5]"))
    expect(chat.send_button).to_be_disabled()
    expect(page.locator("#announcer")).to_contain_text("Limit reached")
    # Enter does nothing while blocked: no message is sent or lost.
    chat.message.fill("three")
    chat.message.press("Enter")
    expect(chat.mine).to_have_count(2)
    expect(chat.message).to_have_value("three")
    # No sleeping: the page re-enables itself when the window resets.
    expect(chat.send_button).to_be_enabled(timeout=10_000)
    expect(chat.limit).to_be_hidden()
    expect(chat.quota).to_have_text("2 of 2 left")
    expect(page.locator("#announcer")).to_have_text("You can send messages again.")
    chat.message.press("Enter")
    expect(chat.replies).to_have_count(3)
    problems.assert_none()


def test_a_429_keeps_the_message_and_shows_the_countdown(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    problems.expect_http_errors(429)
    app = serve(RATE_LIMIT="2/5second")
    chat = ChatPage(page).open(app.url)
    expect(chat.quota).to_have_text("2 of 2 left")
    # Another tab of the same user spends the quota behind this page's back.
    statuses = page.evaluate(
        """async () => {
            const post = () => fetch('/chat', {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: '{"message": "other tab"}'});
            return [(await post()).status, (await post()).status];
        }"""
    )
    assert statuses == [200, 200]
    chat.message.fill("still here?")
    chat.message.press("Enter")
    expect(chat.mine.locator(".msg-meta")).to_contain_text("Not sent. Over the limit")
    expect(chat.message).to_have_value("still here?")
    expect(chat.send_button).to_be_disabled()
    expect(chat.countdown).to_have_text(re.compile(r"0:0[1-5]"))
    expect(chat.quota).to_have_text("0 of 2 left")
    expect(chat.send_button).to_be_enabled(timeout=10_000)
    chat.message.press("Enter")
    expect(chat.replies).to_have_count(1)
    expect(chat.message).to_have_value("")
    problems.assert_none()


def test_burst_in_one_process_allows_exactly_the_limit(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    problems.expect_http_errors(429)
    chat = ChatPage(page).open(single_app.url)
    expect(chat.burst_count).to_have_value("10")
    chat.burst(10)
    expect(chat.burst_summary).to_have_text("3 of 10 allowed, 7 blocked.")
    assert chat.burst_table() == {"solo": (3, 7)}
    expect(page.locator("#burst-allowed")).to_have_text("3")
    expect(page.locator("#burst-blocked")).to_have_text("7")
    expect(chat.quota).to_have_text("0 of 3 left")
    expect(chat.send_button).to_be_disabled()
    problems.assert_none()


def test_backend_down_shows_a_message_and_the_page_recovers_by_itself(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    problems.expect_connection_refused()
    app = serve()
    chat = ChatPage(page).open(app.url)
    app.stop()
    chat.message.fill("anyone there?")
    chat.message.press("Enter")
    expect(chat.notice).to_contain_text("Can't reach the server")
    expect(chat.mine.locator(".msg-meta")).to_contain_text("Not sent")
    expect(chat.message).to_have_value("anyone there?")
    expect(chat.send_button).to_be_enabled()
    app.start()  # the same port again
    expect(chat.notice).to_be_hidden(timeout=15_000)
    chat.message.press("Enter")
    expect(chat.replies).to_have_count(1)
    problems.assert_none()


def test_one_replica_name_is_single_mode_everywhere_with_no_per_replica_panel(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    # Scaled means more than one replica, one rule for the banner, the panel and /api/info.
    app = serve(REPLICA_NAMES="app-1", INSTANCE_NAME="app-1")
    chat = ChatPage(page).open(app.url)  # waits for /api/info and /api/quota to be shown
    expect(chat.mode).to_contain_text("Single process")
    expect(chat.replica_panel).to_be_hidden()
    problems.assert_none()


def test_a_server_error_shows_its_detail(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    # A real 503: Redis is unreachable and the app is configured to fail closed.
    problems.expect_http_errors(503)
    app = serve(STORAGE_URI="redis://127.0.0.1:9/0", FAIL_MODE="closed")
    page.goto(app.url)
    # On load the quota card says why there is no quota (test_page_signals.py); a message sent
    # anyway gets the 503's detail.
    chat = ChatPage(page)
    chat.message.fill("hello?")
    chat.message.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Server error 503")
    expect(chat.mine.locator(".msg-meta")).to_contain_text("Not sent. Server error 503")
    expect(chat.message).to_have_value("hello?")
    problems.assert_none()


def test_with_rate_limiting_off_the_page_says_so_and_never_blocks(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    app = serve(RATE_LIMIT_ENABLED="false", RATE_LIMIT="1/minute")
    chat = ChatPage(page).open(app.url)
    expect(chat.mode).to_contain_text("limit off")
    expect(chat.quota).to_have_text("Unlimited: rate limiting is off.")
    for text in ("one", "two"):
        chat.send(text)
    expect(chat.quota).to_have_text("Unlimited: rate limiting is off.")
    expect(chat.send_button).to_be_enabled()
    problems.assert_none()


def test_the_page_is_usable_at_360_px(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    chat = ChatPage(page).open(single_app.url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    box = chat.send_button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 360
    # The quota comes before the chat on a phone.
    quota_box = page.locator("#quota-text").bounding_box()
    messages_box = chat.messages.bounding_box()
    assert quota_box is not None and messages_box is not None
    assert quota_box["y"] < messages_box["y"]
    chat.send("hello from a phone")
    expect(chat.quota).to_have_text("2 of 3 left")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    chat.screenshot("page-mobile")
    problems.assert_none()


def test_the_page_sends_a_csp_that_forbids_inline_script(single_app: ServedApp, page: Page) -> None:
    response = page.goto(single_app.url)
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = response.text()
    assert "<script>" not in html
    assert re.search(r"\s(style|on[a-z]+)=", html) is None


@pytest.mark.parametrize("engine", ["chatlimit", "slowapi"])
def test_an_api_key_typed_into_the_page_shows_its_tier_and_its_limit(
    page: Page, problems: PageProblems, serve: ServeFactory, engine: str
) -> None:
    key = "sk-browser-pro-93c1"
    app = serve(API_KEYS=f"{key}=pro", TIER_LIMITS="free=2/minute;pro=5/minute",
                RATE_LIMIT_ENGINE=engine)
    chat = ChatPage(page).open(app.url)
    expect(page.locator("#quota-tier")).to_have_text("Tier free")
    expect(chat.quota).to_have_text("2 of 2 left")
    page.locator("#api-key").fill(key)
    page.locator("#key-form button").click()
    expect(page.locator("#quota-tier")).to_have_text("Tier pro")
    expect(chat.quota).to_have_text("5 of 5 left")
    chat.send("hello with a key")
    expect(chat.quota).to_have_text("4 of 5 left")
    assert key not in page.content()  # typed into the field, never written into the page
    problems.assert_none()
