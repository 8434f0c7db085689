"""RATE_LIMIT_MODE=shadow: every refusal is counted and reported, none is made."""

from __future__ import annotations

import logging
from http import HTTPStatus

import pytest

from chatlimit.observe.logs import RefusalLog

from ...support import ClientFactory, metric, metric_samples
from ...traffic import send

BURST = 7
LIMIT = 3


def test_a_burst_past_the_limit_gets_only_200s_and_counts_what_enforce_refuses(
    make_client: ClientFactory, storage_uri: str
) -> None:
    # Two users (two User-Agents) so both modes start from a full quota on one storage.
    enforce = make_client(metrics="on", storage_uri=storage_uri, rate_limit=f"{LIMIT}/minute")
    enforce.headers["User-Agent"] = "enforcing"
    shadow = make_client(metrics="on", storage_uri=storage_uri, rate_limit=f"{LIMIT}/minute",
                         rate_limit_mode="shadow")
    shadow.headers["User-Agent"] = "shadowing"
    refused = sum(a.status_code == HTTPStatus.TOO_MANY_REQUESTS for a in send(enforce, BURST))
    answers = send(shadow, BURST)
    assert refused == BURST - LIMIT
    assert {a.status_code for a in answers} == {HTTPStatus.OK}
    flagged = [a for a in answers if a.headers.get("X-RateLimit-Shadow") == "would-refuse"]
    assert len(flagged) == refused
    assert all("Retry-After" not in a.headers for a in answers)
    samples = metric_samples(shadow.get("/metrics").text)
    decisions = "chatlimit_rate_limit_decisions_total"
    assert metric(samples, decisions, result="shadow", kind="requests") == refused
    assert metric(samples, decisions, result="over_limit") == 0
    assert metric(samples, decisions, result="within_limit", kind="requests") == LIMIT
    stats = shadow.get("/api/stats").json()
    assert (stats["mode"], stats["allowed"], stats["blocked"], stats["shadow"]) == (
        "shadow", LIMIT, 0, refused)


def test_shadow_refusals_log_one_line_a_second_at_most(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(rate_limit=f"{LIMIT}/minute", rate_limit_mode="shadow")
    with caplog.at_level(logging.INFO, logger="chatlimit.refusals"):
        send(client, BURST)
    lines = [r for r in caplog.records if r.name == "chatlimit.refusals"]
    # The burst takes well under a second in process; on a slow machine it may straddle one.
    assert 1 <= len(lines) <= 2
    assert lines[0].event == "would_refuse"  # type: ignore[attr-defined]
    assert lines[0].policy == f"{LIMIT} per 1 minute"  # type: ignore[attr-defined]


def test_the_refusal_log_stands_for_the_refusals_it_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = RefusalLog(shadow=False, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="chatlimit.refusals"):
        for _ in range(5):
            log.refused("3 per 1 minute", "requests", "abc:def")
        now[0] += 1.0
        log.refused("3 per 1 minute", "requests", "abc:def")
    assert [r.suppressed for r in caplog.records] == [0, 4]  # type: ignore[attr-defined]
    assert [r.event for r in caplog.records] == ["refused", "refused"]  # type: ignore[attr-defined]
