"""The token budget on the page, in real Chromium against nginx, three replicas and `chatlimit
model`: the token meter beside the request meter, and the upstream bill card read from the
model's ledger, which says in words whether the bill passed the budget (Redis: never; memory:
each replica counts alone)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from chatlimit.tools.stack import LocalStack as Cluster

from .chatpage import SCREENSHOTS, ChatPage
from .conftest import PageProblems

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.nginx]

BUDGET = 400


@pytest.fixture(scope="module", params=["redis", "memory"])
def cluster(request: pytest.FixtureRequest, make_cluster: Callable[..., Cluster]) -> Cluster:
    # Short, quick stories, so a few messages spend a budget of 400.
    env = {"RATE_LIMIT": "100/minute", "RATE_LIMIT_PER_ADDRESS": "off",
           "TOKEN_LIMIT": f"{BUDGET}/hour", "LLM_MAX_TOKENS": "100", "MODEL_TOKEN_DELAY_MS": "2"}
    return make_cluster(replicas=3, storage=request.param, env=env)


def test_the_token_meter_and_the_upstream_bill_say_whether_the_budget_held(
    page: Page, problems: PageProblems, cluster: Cluster
) -> None:
    problems.expect_http_errors(429)  # the refusal that ends the run
    chat = ChatPage(page).open(cluster.url)
    tokens = page.locator("#token-text")
    expect(tokens).to_have_text(f"{BUDGET} of {BUDGET} tokens left")
    bill = page.locator("#bill")
    verdict = page.locator("#bill-verdict")
    limit = page.locator("#limit-title")
    for _ in range(9):
        before = chat.replies.count()
        chat.message.fill("tell me a story")
        chat.message.press("Enter")
        # Either a reply streams to its end, or the message is refused and put back.
        page.wait_for_function(
            "n => document.querySelectorAll('#messages .msg-bot').length > n &&"
            " !document.querySelector('#messages .msg-streaming')"
            " || !document.getElementById('limit').hidden", arg=before)
        if not page.locator("#limit").is_hidden():
            break
    expect(bill).to_be_visible()
    if cluster.storage == "redis":
        expect(limit).to_have_text("You've used your token budget for now.")
        expect(verdict).to_contain_text("Within budget")
        expect(verdict).to_have_class(re.compile(r"verdict-good"))
    else:
        expect(verdict).to_contain_text("Over budget")
        expect(verdict).to_contain_text("each replica counts your tokens alone")
        expect(verdict).to_have_class(re.compile(r"verdict-bad"))
    billed = int(re.search(r"generated ([\d,]+) tokens", page.locator("#bill-text")
                           .inner_text()).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert (billed <= BUDGET) == (cluster.storage == "redis")
    expect(tokens).to_have_text(re.compile(r"[\d,]+ of 400 tokens left"))
    page.screenshot(path=str(SCREENSHOTS / f"page-tokens-{cluster.storage}.png"), full_page=True)
    problems.assert_none()
