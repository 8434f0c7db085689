"""Browser fixtures: Debian's Chromium driven by Playwright, and the app served for real by
`python -m chatlimit serve` (uvicorn in its own process), not a TestClient.

Each test gets its own User-Agent, and the app keys a user on address plus User-Agent, so each
test starts with a full quota on a shared server: isolation by unique keys, not by restarts.
"""

from __future__ import annotations

import os
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page

from chatlimit.tools.processes import Process, free_port, wait_until

from ..support import missing

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


@dataclass
class ServedApp:
    """`python -m chatlimit serve` on a free loopback port."""

    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServedApp:
        env = {**os.environ, **self.env}
        env.pop("REDIS_URL", None)
        self.process = Process(
            f"serve-{self.port}",
            [sys.executable, "-m", "chatlimit", "serve", "--port", str(self.port)],
            self.workdir / f"serve-{self.port}.log", env=env, cwd=self.workdir,
        )
        self.process.start()
        try:
            wait_until(self.healthy, timeout=30, what=f"chatlimit serve on port {self.port}")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.process.log_tail()}") from None
        return self

    def healthy(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise RuntimeError(f"chatlimit serve exited:\n{self.process.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


ServeFactory = Callable[..., ServedApp]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start an app with the given environment: serve(RATE_LIMIT="2/5second")."""
    started: list[ServedApp] = []

    def factory(**env: str) -> ServedApp:
        app = ServedApp(tmp_path, {**SINGLE_ENV, **env}).start()
        started.append(app)
        return app

    yield factory
    for app in started:
        app.stop()


@pytest.fixture(scope="module")
def single_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """One served app for the tests that only need the defaults (3/minute, memory)."""
    app = ServedApp(
        tmp_path_factory.mktemp("single"),
        SINGLE_ENV,
    ).start()
    yield app
    app.stop()

