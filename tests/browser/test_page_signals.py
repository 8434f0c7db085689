"""The page's signals tell the truth against one real `chatlimit serve`: the storage chip while
Redis does not answer, the quota card under FAIL_MODE=closed, the chat after a burst, and what
a screen reader is told."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from chatlimit.tools.processes import RedisServer, free_port

from ..support import ServedApp, ServeFactory
from .chatpage import ChatPage
from .conftest import PageProblems
from .contrast import below_aa

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_degraded_answer_turns_the_storage_chip_into_a_warning_and_back(
    page: Page, problems: PageProblems, serve: ServeFactory, own_redis: RedisServer
) -> None:
    app = serve(STORAGE_URI=own_redis.url, FAIL_MODE="open", RATE_LIMIT="20/minute")
    chat = ChatPage(page).open(app.url)
    chip = page.locator("#mode-storage")
    expect(chip).to_have_text("Redis, shared")
    own_redis.stop()
    chat.send("hello")  # counted in the process's own memory, with X-RateLimit-Degraded
    expect(chip).to_have_text("Redis unreachable: each replica counts alone")
    expect(chip).to_have_class(re.compile(r"\bchip-degraded\b"))
    expect(page.locator("#mode-note")).to_contain_text("Redis is not answering")
    own_redis.start()
    # The breaker probes Redis again at most once a second: send until an answer is shared.
    for attempt in range(10):
        chat.send(f"again {attempt}")
        if chip.inner_text() == "Redis, shared":
            break
    expect(chip).to_have_text("Redis, shared")
    expect(chip).to_have_class(re.compile(r"\bchip-redis\b"))
    problems.assert_none()


def test_with_fail_mode_closed_and_redis_down_the_quota_card_says_so(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    problems.expect_http_errors(503)
    app = serve(STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0", FAIL_MODE="closed")
    page.goto(app.url)
    quota = page.locator("#quota-text")
    expect(quota).to_have_text(
        "Redis is unreachable, so no message can be counted: each one is refused until it answers.")
    expect(page.locator("#quota-meter")).to_be_hidden()  # not a full green meter
    expect(page.locator("#mode-storage")).to_have_text("Redis unreachable: messages refused")
    expect(page.locator("#mode-note")).to_contain_text("FAIL_MODE=closed")
    problems.assert_none()


def test_after_a_burst_the_empty_chat_text_gives_way_to_the_burst(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    problems.expect_http_errors(429)
    chat = ChatPage(page).open(single_app.url)
    expect(chat.messages).to_contain_text("Say hello.")
    chat.burst(5)
    expect(chat.messages).not_to_contain_text("Say hello.")
    expect(chat.messages.locator(".msg-system")).to_have_text(
        "3 of 5 allowed, 2 blocked.")
    problems.assert_none()


def test_screen_readers_hear_the_quota_left_after_each_message(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    chat = ChatPage(page).open(single_app.url)
    live = page.get_by_role("status").filter(has_text=re.compile("messages left"))
    chat.send("hello")
    expect(live).to_have_text("2 of 3 messages left.")
    expect(live).to_have_attribute("aria-live", "polite")
    chat.send("and again")
    expect(live).to_have_text("1 of 3 messages left.")
    problems.assert_none()


def test_the_mode_banner_is_a_region_named_for_what_it_says(
    page: Page, problems: PageProblems, single_app: ServedApp
) -> None:
    ChatPage(page).open(single_app.url)
    banner = page.get_by_role("region", name="How this deployment counts")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Single process")
    problems.assert_none()


def test_every_text_reaches_4_5_to_1_in_light_and_dark_in_every_state(
    page: Page, problems: PageProblems, single_app: ServedApp, serve: ServeFactory
) -> None:
    problems.expect_http_errors(429, 503)
    chat = ChatPage(page).open(single_app.url)
    low = below_aa(page, "light") + below_aa(page, "dark")
    chat.send("hello")
    # Another tab of the same user spends the rest behind this page's back: the next is a 429.
    page.evaluate("""async () => { for (let i = 0; i < 2; i++) await fetch('/chat', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: '{"message": "other tab"}'}); }""")
    chat.message.fill("one too many")
    chat.message.press("Enter")
    expect(chat.mine.last.locator(".msg-meta")).to_contain_text("Not sent. Over the limit")
    expect(chat.limit).to_be_visible()
    chat.burst(2)
    low += below_aa(page, "light") + below_aa(page, "dark")
    # Redis down under FAIL_MODE=closed: the warning chip, the notice, a failed message.
    closed = serve(STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0", FAIL_MODE="closed")
    page.emulate_media(color_scheme="light")
    page.goto(closed.url)
    expect(page.locator("#mode-storage")).to_have_text("Redis unreachable: messages refused")
    chat.message.fill("anyone?")
    chat.message.press("Enter")
    expect(chat.notice).to_contain_text("Server error 503")
    low += below_aa(page, "light") + below_aa(page, "dark")
    assert low == [], "\n".join(low)
    problems.assert_none()
