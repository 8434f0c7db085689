"""GET /metrics (observe/metrics.py): per-policy decisions, storage outcomes, HTTP requests;
off by default, one registry per app, and no label value a client chooses."""

from __future__ import annotations

from http import HTTPStatus

from chatlimit.tools.processes import free_port

from ...support import ClientFactory, metric, metric_samples
from ...traffic import chat

DECISIONS = "chatlimit_rate_limit_decisions_total"


def scrape(client) -> dict:  # type: ignore[no-untyped-def, type-arg]
    answer = client.get("/metrics")
    assert answer.status_code == HTTPStatus.OK
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return metric_samples(answer.text)


def test_metrics_are_off_by_default_and_answer_404_in_the_error_shape(make_client: ClientFactory) -> None:
    answer = make_client().get("/metrics")
    assert answer.status_code == HTTPStatus.NOT_FOUND
    assert answer.json()["error"] == "not_found"


def test_each_decision_is_counted_per_policy_and_result(make_client: ClientFactory) -> None:
    client = make_client(metrics="on", rate_limit="3/minute", rate_limit_per_address="10x")
    statuses = [chat(client).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    samples = scrape(client)
    own = {"policy": "3 per 1 minute", "kind": "requests"}
    assert metric(samples, DECISIONS, result="within_limit", **own) == 3
    assert metric(samples, DECISIONS, result="over_limit", **own) == 2
    assert metric(samples, DECISIONS, result="shadow", **own) == 0
    # Past 80% of 3: only the third request (3 of 3 used).
    assert metric(samples, "chatlimit_rate_limit_near_limit_total", **own) == 1
    # The address ceiling counted the three it let through; the refusals never reached it.
    ceiling = {"policy": "30 per 1 minute", "kind": "address"}
    assert metric(samples, DECISIONS, result="within_limit", **ceiling) == 3
    assert metric(samples, DECISIONS, result="over_limit", **ceiling) == 0


def test_quota_reads_are_not_decisions(make_client: ClientFactory) -> None:
    client = make_client(metrics="on")
    for _ in range(3):
        assert client.get("/api/quota").status_code == HTTPStatus.OK
    samples = scrape(client)
    assert metric(samples, DECISIONS) == 0
    assert metric(samples, "chatlimit_storage_calls_total", outcome="ok") == 3


def test_http_requests_are_counted_by_route_template_never_by_raw_path(make_client: ClientFactory) -> None:
    client = make_client(metrics="on", rate_limit="1/minute")
    chat(client)
    chat(client)
    client.get("/no/such/path/user-12345")
    client.request("BREW", "/chat")
    samples = scrape(client)
    requests = "chatlimit_http_requests_total"
    assert metric(samples, requests, route="/chat", method="POST", status="200") == 1
    assert metric(samples, requests, route="/chat", method="POST", status="429") == 1
    assert metric(samples, requests, route="none", method="GET", status="404") == 1
    assert metric(samples, requests, method="other") == 1
    assert metric(samples, "chatlimit_http_request_duration_seconds_count", route="/chat", method="POST") == 2


def test_no_label_carries_a_user_an_address_a_key_or_a_message(make_client: ClientFactory) -> None:
    client = make_client(metrics="on", peer="198.51.100.77", rate_limit="1/minute")
    for _ in range(2):
        chat(client, "my-secret-message", agent="agent-zzz-9")
    text = client.get("/metrics").text
    for secret in ("198.51.100.77", "agent-zzz-9", "my-secret-message", "chatlimit:{"):
        assert secret not in text
    label_values = {v for (_, labels) in metric_samples(text) for _, v in labels}
    assert label_values <= {
        "1 per 1 minute", "10 per 1 minute", "requests", "address", "within_limit", "over_limit",
        "shadow", "ok", "error", "timeout", "fallback", "/chat", "/metrics", "POST", "GET",
        "200", "429", "test-1", "memory", "fixed-window", "enforce",
        "2000 per 1 hour", "tokens", "5 replies at once", "streams",
    } | {v for v in label_values if v.replace(".", "").replace("+Inf", "").isdigit() or v == "+Inf"}


def test_each_app_counts_in_its_own_registry(make_client: ClientFactory) -> None:
    first = make_client(metrics="on")
    second = make_client(metrics="on")
    chat(first)
    chat(first)
    chat(second)
    assert metric(scrape(first), DECISIONS, result="within_limit", kind="requests") == 2
    assert metric(scrape(second), DECISIONS, result="within_limit", kind="requests") == 1


def test_an_unreachable_storage_counts_errors_and_fallbacks_and_sets_degraded(
    make_client: ClientFactory,
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = make_client(metrics="on", storage_uri=nobody, fail_mode="open")
    assert [chat(client).status_code for _ in range(3)] == [200, 200, 200]
    samples = scrape(client)
    failed = (metric(samples, "chatlimit_storage_calls_total", outcome="error")
              + metric(samples, "chatlimit_storage_calls_total", outcome="timeout"))
    assert failed >= 1  # then the circuit is open: at most one probe a second
    assert metric(samples, "chatlimit_storage_calls_total", outcome="fallback") == 3
    assert metric(samples, "chatlimit_storage_calls_total", outcome="ok") == 0
    assert metric(samples, "chatlimit_storage_degraded") == 1
    assert metric(samples, "chatlimit_storage_latency_seconds_count") == failed


def test_token_and_stream_metrics_exist_at_zero_for_the_token_budget(make_client: ClientFactory) -> None:
    samples = scrape(make_client(metrics="on"))
    for name in ("chatlimit_tokens_reserved_total", "chatlimit_tokens_charged_total",
                 "chatlimit_tokens_refunded_total", "chatlimit_streams_in_flight"):
        assert (name, frozenset()) in samples
        assert samples[(name, frozenset())] == 0


def test_the_token_budget_feeds_its_metrics_and_counts_refusals_for_tokens(
    make_client: ClientFactory,
) -> None:
    client = make_client(metrics="on", rate_limit="100/minute", token_limit="600/hour")
    answers = [client.post("/chat", json={"message": "tell me a story"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    charged = sum(a.json()["tokens"]["charged"] for a in answers[:2])
    reserved = sum(a.json()["tokens"]["reserved"] for a in answers[:2])
    samples = scrape(client)
    assert samples[("chatlimit_tokens_reserved_total", frozenset())] == reserved
    assert samples[("chatlimit_tokens_charged_total", frozenset())] == charged
    assert samples[("chatlimit_tokens_refunded_total", frozenset())] == reserved - charged
    assert samples[("chatlimit_streams_in_flight", frozenset())] == 0
    tokens = {"policy": "600 per 1 hour", "kind": "tokens"}
    assert metric(samples, DECISIONS, result="within_limit", **tokens) == 2
    assert metric(samples, DECISIONS, result="over_limit", **tokens) == 1
