"""Replies stream into the page: tokens arrive in several steps, Stop ends the stream (the
partial text stays, marked), the composer is closed while a reply streams, a cut is shown."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from .chatpage import ChatPage
from .conftest import PageProblems, ServeFactory

pytestmark = [pytest.mark.browser, pytest.mark.integration]

COUNT_CHANGES = """() => { window.__changes = 0;
  new MutationObserver(() => { window.__changes += 1; })
    .observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true}); }"""


def start_story(page: Page, serve: ServeFactory) -> tuple[ChatPage, Locator]:
    chat = ChatPage(page).open(serve(RATE_LIMIT="30/minute").url)
    page.evaluate(COUNT_CHANGES)
    chat.message.fill("Tell me a story")
    chat.message.press("Enter")
    reply = chat.replies.first
    expect(reply).to_contain_text("Once upon a time")
    return chat, reply


def test_tokens_arrive_in_several_steps(page: Page, problems: PageProblems, serve: ServeFactory) -> None:
    _, reply = start_story(page, serve)
    expect(reply).to_have_class(re.compile(r"\bmsg-streaming\b"))  # still arriving
    expect(reply).not_to_have_class(re.compile(r"\bmsg-streaming\b"), timeout=30_000)
    assert page.evaluate("window.__changes") > 50  # 256 tokens, each its own update
    expect(reply.locator(".msg-ended")).to_have_count(0)
    problems.assert_none()


def test_stop_ends_the_stream_and_keeps_the_partial_reply_marked(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    chat, reply = start_story(page, serve)
    stop = page.get_by_role("button", name="Stop")
    expect(chat.message).to_be_disabled()  # the composer is closed while it streams
    expect(chat.send_button).to_be_disabled()
    stop.click()
    expect(reply.locator(".msg-ended")).to_have_text("Stopped: you ended this reply.")
    partial = reply.locator(".msg-text").inner_text()
    assert partial.startswith("Once upon a time") and "The end." not in partial
    expect(stop).to_be_hidden()
    expect(chat.message).to_be_enabled()
    expect(chat.send_button).to_be_enabled()
    assert reply.locator(".msg-text").inner_text() == partial  # nothing more arrives
    problems.assert_none()


def test_a_cut_stream_keeps_its_partial_text_marked_as_cut(
    page: Page, problems: PageProblems, serve: ServeFactory
) -> None:
    chat = ChatPage(page).open(serve(RATE_LIMIT="30/minute").url)
    chat.message.fill("simulate a cut")
    chat.message.press("Enter")
    reply = chat.replies.first
    expect(reply.locator(".msg-ended")).to_contain_text("Cut off:")
    expect(reply.locator(".msg-text")).to_have_text(re.compile(r"^This reply will break off in\s*$"))
    expect(reply).to_have_class(re.compile(r"\bmsg-cut\b"))
    expect(chat.message).to_be_enabled()
    problems.assert_none()
