"""The chat page as the tests drive it: locators by role and label, the way a user finds them."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from ..support import ROOT

# The README's pictures are retaken only when asked (`make screenshots` sets this); a plain
# test run must not rewrite tracked files, so its screenshots go to a temporary folder.
SCREENSHOTS = (ROOT / "docs" / "images" if os.environ.get("CHATLIMIT_SCREENSHOTS") == "docs"
               else Path(tempfile.gettempdir()) / "chatlimit-screenshots")


class ChatPage:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.message = page.get_by_label("Message", exact=True)
        self.send_button = page.get_by_role("button", name="Send", exact=True)
        self.messages = page.locator("#messages")
        self.replies = page.locator("#messages .msg-bot")
        self.mine = page.locator("#messages .msg-me")
        self.quota = page.locator("#quota-text")
        self.quota_reset = page.locator("#quota-reset")
        self.limit = page.locator("#limit")
        self.countdown = page.locator("#limit-countdown")
        self.notice = page.get_by_role("alert")
        self.mode = page.locator("#mode")
        self.burst_count = page.get_by_label("Requests")
        self.burst_button = page.get_by_role("button", name="Send burst")
        self.burst_summary = page.locator("#burst-summary")
        self.burst_rows = page.locator("#burst-rows tr")
        self.replica_panel = page.locator("#replicas")
        self.replica_views = page.locator("#replica-list .replica")
        self.verdict = page.locator("#replicas-verdict")

    def open(self, url: str) -> ChatPage:
        self.page.goto(url)
        expect(self.quota).to_have_text(re.compile(r"\d+ of \d+ left|Unlimited"))
        return self

    def send(self, text: str) -> Locator:
        """Type a message, press Enter, and wait for its reply to finish streaming; returns it."""
        before = self.replies.count()
        self.message.fill(text)
        self.message.press("Enter")
        reply = self.replies.nth(before)
        expect(reply).to_be_visible()
        expect(reply).not_to_have_class(re.compile(r"\bmsg-streaming\b"))
        return reply

    def badges(self) -> list[str]:
        return [text.strip() for text in self.replies.locator(".badge").all_text_contents()]

    def burst(self, count: int) -> None:
        self.burst_count.fill(str(count))
        self.burst_button.click()
        expect(self.burst_summary).to_contain_text(f"of {count} allowed")

    def burst_table(self) -> dict[str, tuple[int, int]]:
        rows = {}
        for row in self.burst_rows.all():
            name = row.locator("th").inner_text().strip()
            allowed, blocked = (int(cell) for cell in row.locator("td").all_inner_texts())
            rows[name] = (allowed, blocked)
        return rows

    def replica_remaining(self) -> dict[str, int]:
        """Each replica's view, "let 2 through, 3 of 5 left" (counting alone) or "sees 2 used,
        3 of 5 left" (the shared count): what it has left for you."""
        views = {}
        for view in self.replica_views.all():
            text = view.locator(".replica-text").inner_text()
            match = re.fullmatch(r"(?:let \d+ through|sees \d+ used), (\d+) of \d+ left", text.strip())
            assert match, text
            views[str(view.get_attribute("data-replica"))] = int(match.group(1))
        return views

    def screenshot(self, name: str) -> Path:
        """A full-page screenshot <name>.png: docs/images with CHATLIMIT_SCREENSHOTS=docs."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
        return path
