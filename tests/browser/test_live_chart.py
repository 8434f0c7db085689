"""The live per-replica chart (frontend/static/chart.js) against three real replicas behind
nginx: its numbers are the burst's, per replica. Memory: each replica allows a full quota.
Redis: the sum stays at the limit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from chatlimit.tools.stack import LocalStack as Cluster

from .chatpage import ChatPage
from .conftest import PageProblems

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.nginx]

LIMIT = 4
BURST = 18  # at least LIMIT per replica, whatever the round robin does


@pytest.fixture(scope="module", params=["redis", "memory"])
def cluster(request: pytest.FixtureRequest, make_cluster: Callable[..., Cluster]) -> Cluster:
    env = {"RATE_LIMIT": f"{LIMIT}/minute", "RATE_LIMIT_PER_ADDRESS": "off"}
    return make_cluster(replicas=3, storage=request.param, env=env)


def test_the_chart_shows_each_replicas_allowed_and_blocked_as_the_burst_saw_them(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    problems.expect_http_errors(429)
    chat = ChatPage(page).open(cluster.url)
    card = page.locator("#live-chart")
    rows = card.locator(".chart-replica")
    expect(card).to_be_visible()
    expect(rows).to_have_count(3)
    expect(rows.locator(".chart-text")).to_have_text(["0 allowed \u00b7 0 blocked"] * 3)

    chat.burst(BURST)
    table = chat.burst_table()
    assert sum(a + b for a, b in table.values()) == BURST
    for name in cluster.names:
        allowed, blocked = table.get(name, (0, 0))
        row = card.locator(f'.chart-replica[data-replica="{name}"]')
        # The chart polls every 2 s: wait for the poll after the burst, never sleep.
        expect(row).to_have_attribute("data-allowed", str(allowed), timeout=15_000)
        expect(row).to_have_attribute("data-blocked", str(blocked))
        expect(row.locator(".chart-text")).to_have_text(f"{allowed} allowed \u00b7 {blocked} blocked")
        # One bar per 5 s bucket: a burst that straddles a bucket edge draws two.
        bars = row.locator("svg rect.chart-allowed")
        if allowed:
            expect(bars.first).to_be_attached()
        else:
            expect(bars).to_have_count(0)
    total_allowed = sum(a for a, _ in table.values())
    if cluster.storage == "redis":
        assert total_allowed == LIMIT  # one shared count: the sum stays at the limit
    else:
        assert all(a == LIMIT for a, _ in table.values()), table  # each allows a full quota
        assert total_allowed == 3 * LIMIT
    expect(card.locator("#chart-total")).to_have_text(
        f"All replicas, last minute: {total_allowed} allowed, {BURST - total_allowed} blocked.")
    chat.screenshot(f"page-live-chart-{cluster.storage}")
    problems.assert_none()
