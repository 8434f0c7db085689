"""Browser fixtures: Debian's Chromium driven by Playwright, and the app served for real by
`python -m chatlimit serve` (uvicorn in its own process), not a TestClient.

Each test gets its own User-Agent, and the app keys a user on address plus User-Agent, so each
test starts with a full quota on a shared server: isolation by unique keys, not by restarts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page

from ..support import ServedApp, ServeFactory, missing

CHROMIUM = "/usr/bin/chromium"
# The tests isolate themselves by rotating User-Agents from one address, which is exactly what
# the per-address ceiling exists to stop; it has its own tests, so it is off here.
SINGLE_ENV = {
    "STORAGE_URI": "memory://", "INSTANCE_NAME": "solo", "RATE_LIMIT": "3/minute",
    "RATE_LIMIT_PER_ADDRESS": "off",
}


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """Debian's Chromium, headless; Playwright's own browser downloads are never used."""
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"{CHROMIUM} not found: install it with: sudo apt-get install chromium")
    return {
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ],
    }


@pytest.fixture(scope="session")
def base_url() -> None:
    """Tests pass full URLs. (Also replaces pytest-playwright's own base_url fixture, an
    instance method that pytest 9 warns about, and warnings are errors here.)"""
    return None


@pytest.fixture
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_context_args,
        "viewport": {"width": 1280, "height": 860},
        "user_agent": f"chatlimit-browser-test/{uuid.uuid4().hex}",
        "locale": "en-US",
        "color_scheme": "light",
        "reduced_motion": "reduce",
    }


@dataclass
class PageProblems:
    """Everything that must not happen on the page: console errors, uncaught exceptions,
    Content-Security-Policy violations and dialogs (alert() from injected markup)."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    page: Page | None = None
    expected: set[str] = field(default_factory=set)

    def expect_http_errors(self, *statuses: int) -> None:
        """Chromium logs every 4xx/5xx fetch as a console error; a test that provokes some
        (a 429, a 503) names them, and any other console error still fails it."""
        self.expected.update(f"status of {status}" for status in statuses)

    def expect_connection_refused(self) -> None:
        self.expected.add("net::ERR_CONNECTION_REFUSED")

    def expect_cut_responses(self) -> None:
        """A test that kills a server mid-answer: the page's own polling may have a response
        in flight, which the kill cuts after its head (nginx then passes on what it had)."""
        self.expected.update({"net::ERR_CONTENT_LENGTH_MISMATCH",
                              "net::ERR_INCOMPLETE_CHUNKED_ENCODING", "net::ERR_EMPTY_RESPONSE"})

    def unexpected_console(self) -> list[str]:
        return [
            line for line in self.console
            if not (line.startswith("Failed to load resource")
                    and any(part in line for part in self.expected))
        ]

    def csp_violations(self) -> list[str]:
        assert self.page is not None
        return list(self.page.evaluate("window.__cspViolations || []"))

    def assert_none(self) -> None:
        assert self.unexpected_console() == []
        assert self.exceptions == []
        assert self.dialogs == []
        assert self.csp_violations() == []


@pytest.fixture
def problems(page: Page) -> Iterator[PageProblems]:
    found = PageProblems(page=page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            found.console.append(message.text)

    def on_exception(error: Error) -> None:
        found.exceptions.append(str(error))

    page.on("console", on_console)
    page.on("pageerror", on_exception)
    page.on("dialog", lambda dialog: (found.dialogs.append(dialog.message), dialog.dismiss()))
    page.add_init_script(
        "window.__cspViolations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    yield found


@pytest.fixture
def serve(serve: ServeFactory) -> ServeFactory:
    """Start an app with the given environment on top of SINGLE_ENV: serve(RATE_LIMIT="2/5second")."""
    return lambda **env: serve("solo", **{**SINGLE_ENV, **env})


@pytest.fixture(scope="module")
def single_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """One served app for the tests that only need the defaults (3/minute, memory)."""
    app = ServedApp(tmp_path_factory.mktemp("single"), "solo", **SINGLE_ENV).start()
    yield app
    app.stop()

