"""The chat page against the scaled topology: nginx in front of three replicas started by
`chatlimit.tools.stack.LocalStack`, once sharing Redis and once counting in memory."""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus

import httpx
import pytest
from playwright.sync_api import Page, expect

from chatlimit.tools.stack import LocalStack as Cluster

from .chatpage import ChatPage
from .conftest import PageProblems
from .contrast import below_aa

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.nginx]

LIMIT = 3  # the default: the screenshots show the limit a newcomer gets


@pytest.fixture(scope="module", params=["redis", "memory"])
def cluster(request: pytest.FixtureRequest, make_cluster: Callable[..., Cluster]) -> Cluster:
    # Per-address ceiling off: the tests rotate User-Agents from one address to isolate.
    env = {"RATE_LIMIT": f"{LIMIT}/minute", "RATE_LIMIT_PER_ADDRESS": "off"}
    return make_cluster(replicas=3, storage=request.param, env=env)


def test_the_banner_says_scaled_and_how_the_replicas_count(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    chat = ChatPage(page).open(cluster.url)
    expect(chat.mode).to_contain_text("Scaled · 3 replicas")
    if cluster.storage == "redis":
        expect(chat.mode).to_contain_text("Redis, shared")
        expect(chat.mode).to_contain_text("the limit holds")
    else:
        expect(chat.mode).to_contain_text("Memory, per process")
        expect(chat.mode).to_contain_text("up to 3 \u00d7 the limit")
    expect(chat.replica_panel).to_be_visible()
    expect(chat.replica_views).to_have_count(3)
    problems.assert_none()


def test_badges_show_the_replicas_taking_turns_each_in_its_own_colour(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    chat = ChatPage(page).open(cluster.url)
    for text in ("hello", "what is a replica?", "and redis?"):
        chat.send(text)
    badges = chat.badges()
    assert set(badges) <= set(cluster.names)
    assert len(set(badges)) >= 2
    colours = dict(zip(badges, chat.replies.locator(".badge").evaluate_all(
        "els => els.map(e => e.className)"), strict=True))
    assert len(set(colours.values())) == len(colours)
    expect(chat.quota).to_have_text(re.compile(rf"\d of {LIMIT} left"))
    problems.assert_none()


def test_each_replicas_view_is_one_shared_count_with_redis_and_its_own_with_memory(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    chat = ChatPage(page).open(cluster.url)
    counted = "sees {} used" if cluster.storage == "redis" else "let {} through"
    expect(chat.replica_views.locator(".replica-text")).to_have_text(
        [f"{counted.format(0)}, {LIMIT} of {LIMIT} left"] * 3)
    served_by = chat.send("hello").locator(".badge").inner_text()
    if cluster.storage == "redis":
        expect(chat.replica_views.locator(".replica-text")).to_have_text(
            [f"sees 1 used, {LIMIT - 1} of {LIMIT} left"] * 3)
        expect(chat.verdict).to_have_text(
            f"They share one count in Redis: 1 of {LIMIT} used, whichever replica answers.")
        expect(chat.verdict).to_have_class("verdict verdict-good")
    else:
        expected = {name: LIMIT - (name == served_by) for name in cluster.names}
        expect(page.locator(f'#replica-list [data-replica="{served_by}"] .replica-text')).to_have_text(
            f"let 1 through, {LIMIT - 1} of {LIMIT} left")
        assert chat.replica_remaining() == expected
        # One message is within the limit: not a bypass yet, and not agreement either.
        expect(chat.verdict).to_contain_text(f"Together they let 1 through; the limit is {LIMIT}.")
        expect(chat.verdict).to_have_class("verdict verdict-open")
    problems.assert_none()


def test_burst_shows_how_many_requests_each_replica_let_through(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    problems.expect_http_errors(429)
    chat = ChatPage(page).open(cluster.url)
    chat.send("hello")
    expect(chat.verdict).not_to_be_empty()
    before = chat.replica_remaining()
    chat.burst(10)
    rows = chat.burst_table()
    assert set(rows) <= set(cluster.names)
    assert sum(a + b for a, b in rows.values()) == 10
    allowed = sum(a for a, _ in rows.values())
    if cluster.storage == "redis":
        # One shared count: exactly what was left of the limit gets through.
        assert allowed == LIMIT - 1
        expect(chat.burst_summary).to_have_text(f"{LIMIT - 1} of 10 allowed, {10 - LIMIT + 1} blocked.")
        expect(chat.replica_views.locator(".replica-text")).to_have_text(
            [f"sees {LIMIT} used, 0 of {LIMIT} left"] * 3)
        expect(chat.verdict).to_have_text(
            f"They share one count in Redis: {LIMIT} of {LIMIT} used, whichever replica answers.")
        expect(chat.send_button).to_be_disabled()
    else:
        # Each replica lets through what it alone has left: together more than the limit.
        assert rows == {
            name: (min(a + b, before[name]), a + b - min(a + b, before[name]))
            for name, (a, b) in rows.items()
        }
        assert allowed > LIMIT
        expect(chat.burst_summary).to_contain_text(f"More than the limit of {LIMIT} got through")
        # The panel adds up what the replicas let through: the hello and the burst's allowed.
        expect(chat.verdict).to_contain_text(
            f"Together they let {allowed + 1} through; the limit is {LIMIT}.")
        expect(chat.verdict).to_have_class("verdict verdict-bad")
    chat.screenshot(f"page-scaled-{cluster.storage}")
    problems.assert_none()


@pytest.mark.parametrize("cluster", ["memory"], indirect=True)
def test_a_burst_that_empties_every_replica_stays_red_and_never_reads_as_agreement(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    # Every replica at 0 left: equal numbers, which a panel comparing what is *left* read as
    # "All replicas agree". What was used says otherwise: three quotas got through.
    problems.expect_http_errors(429)
    chat = ChatPage(page).open(cluster.url)
    chat.burst(4 * LIMIT)
    table = chat.burst_table()
    assert sorted(table) == cluster.names
    assert all(allowed == LIMIT for allowed, _ in table.values()), table
    expect(chat.replica_views.locator(".replica-text")).to_have_text(
        [f"let {LIMIT} through, 0 of {LIMIT} left"] * 3)
    expect(chat.verdict).to_have_text(
        f"Together they let {3 * LIMIT} through; the limit is {LIMIT}. Each replica counts you "
        "on its own, so you get up to 3 \u00d7 the limit.")
    expect(chat.verdict).to_have_class("verdict verdict-bad")
    expect(chat.verdict).not_to_contain_text("agree")
    expect(chat.send_button).to_be_disabled()
    expect(page.locator("#limit-others")).to_have_text(
        re.compile(r"^app-\d counted you out, and so has every other replica\.$"))
    problems.assert_none()


def test_when_one_replica_counts_you_out_the_notice_names_it_and_the_others_still_open(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    problems.expect_http_errors(429)
    chat = ChatPage(page).open(cluster.url)
    # The same user (address and User-Agent) spends its whole quota on app-1 alone.
    agent = page.evaluate("navigator.userAgent")
    for _ in range(LIMIT):
        answer = httpx.post(f"{cluster.url}/replica/app-1/chat", json={"message": "hi"},
                            headers={"User-Agent": agent}, timeout=30)
        assert answer.status_code == HTTPStatus.OK
    # Round robin brings the page to app-1 within a few messages.
    for attempt in range(6):
        chat.message.fill(f"message {attempt}")
        chat.message.press("Enter")
        expect(chat.mine.nth(attempt).locator(".msg-meta")).to_have_text(re.compile(r"Sent|Not sent"))
        if chat.limit.is_visible():
            break
    expect(chat.limit).to_be_visible()
    expect(chat.send_button).to_be_disabled()
    if cluster.storage == "memory":
        expect(page.locator("#limit-others")).to_have_text(
            "app-1 counted you out; app-2 and app-3 would still let you through: each replica "
            "counts you on its own.")
    else:
        expect(chat.mine.first.locator(".msg-meta")).to_contain_text("Not sent")
        expect(page.locator("#limit-others")).to_be_empty()
    problems.assert_none()


def test_every_text_reaches_4_5_to_1_in_light_and_dark_scaled(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    problems.expect_http_errors(429)
    chat = ChatPage(page).open(cluster.url)
    chat.send("hello")  # memory: the sum within the limit; Redis: one shared count
    expect(chat.verdict).to_contain_text("1 ")
    low = below_aa(page, "light") + below_aa(page, "dark")
    chat.burst(4 * LIMIT)  # memory: the sum past the limit; both: the limit notice
    expect(chat.limit).to_be_visible()
    expect(chat.verdict).to_contain_text(str(LIMIT))
    low += below_aa(page, "light") + below_aa(page, "dark")
    assert low == [], "\n".join(low)
    problems.assert_none()


@pytest.mark.parametrize("cluster", ["memory"], indirect=True)
def test_at_360_px_each_replicas_view_comes_right_after_the_chat(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    page.set_viewport_size({"width": 360, "height": 780})
    chat = ChatPage(page).open(cluster.url)
    expect(chat.replica_views).to_have_count(3)
    cards = page.locator("main .card:visible").evaluate_all(
        "els => els.map(e => [e.id || e.getAttribute('aria-labelledby'), e.getBoundingClientRect().top,"
        " e.getBoundingClientRect().bottom, e.getBoundingClientRect().width])")
    order = [name for name, *_ in sorted(cards, key=lambda card: card[1])]
    assert order.index("replicas") == order.index("chat-title") + 1, order
    boxes = {name: (top, bottom, width) for name, top, bottom, width in cards}
    assert boxes["replicas"][0] >= boxes["chat-title"][1]  # below it, not beside it
    assert all(width <= 360 for _, _, width in boxes.values())
    problems.assert_none()


# The failure path is the same for both storages: once, on the Redis cluster, is enough.
@pytest.mark.parametrize("cluster", ["redis"], indirect=True)
def test_with_every_replica_down_nginx_answers_502_and_the_page_says_so(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    problems.expect_http_errors(502)
    problems.expect_cut_responses()  # the page's polling may be mid-answer at the kill
    chat = ChatPage(page).open(cluster.url)
    try:
        for name in cluster.names:
            cluster.kill_replica(name)
        chat.message.fill("is anyone there?")
        chat.message.press("Enter")
        expect(chat.notice).to_contain_text("Server error 502: No replica could answer")
        expect(chat.mine.locator(".msg-meta")).to_contain_text("Not sent. Server error 502")
        expect(chat.message).to_have_value("is anyone there?")
        expect(chat.verdict).to_have_text("Some replicas did not answer.")
    finally:
        for name in cluster.names:
            cluster.start_replica(name)
    chat.send_button.click()
    expect(chat.replies).to_have_count(1)
    expect(chat.notice).to_be_hidden()
    problems.assert_none()
