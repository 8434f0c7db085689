"""The /chat limit, against memory:// and a real redis-server, for every strategy."""

from __future__ import annotations

import re
import time
from http import HTTPStatus

import pytest

from chatlimit.storage.redis import round_trips
from chatlimit.tools.processes import RedisServer

from ..support import STRATEGIES, ClientFactory
from ..traffic import chat

RATE_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fourth_request_in_a_minute_is_rejected_with_retry_after(
    make_client: ClientFactory, storage_uri: str, strategy: str
) -> None:
    client = make_client(storage_uri=storage_uri, rate_limit_strategy=strategy)
    answers = [chat(client) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.json()["quota"]["remaining"] for a in answers[:3]] == [2, 1, 0]
    rejected = answers[3]
    body = rejected.json()
    assert body["detail"] == "Rate limit exceeded: 3 per 1 minute"
    assert body["quota"] == {"limit": 3, "remaining": 0, "reset_after": body["retry_after"]}
    assert 1 <= body["retry_after"] <= 60
    assert rejected.headers["Retry-After"] == str(body["retry_after"])
    assert rejected.headers["X-RateLimit-Remaining"] == "0"


def test_a_200_carries_quota_and_rate_limit_headers_but_no_retry_after(
    make_client: ClientFactory, storage_uri: str
) -> None:
    answer = chat(make_client(storage_uri=storage_uri))
    assert answer.status_code == HTTPStatus.OK
    body = answer.json()
    assert body["served_by"] == "test-1"
    assert body["reply"]
    assert body["quota"] == {"limit": 3, "remaining": 2, "reset_after": 60}
    for name in RATE_HEADERS:
        assert name in answer.headers
    assert "Retry-After" not in answer.headers
    assert answer.headers["X-RateLimit-Limit"] == "3"
    assert answer.headers["X-RateLimit-Remaining"] == "2"
    reset = int(answer.headers["X-RateLimit-Reset"])
    assert time.time() + 55 <= reset <= time.time() + 62
    # The token budget and the stream slots are listed beside the request policy.
    assert answer.headers["RateLimit-Policy"] == (
        '"3-per-1-minute";q=3;w=60, "tokens-2000-per-1-hour";q=2000;w=3600;chatlimit-qu="tokens", '
        '"streams";q=5;qu="concurrent-requests"')
    reserved = 2000 - int(answer.headers["X-RateLimit-Remaining-Tokens"])
    assert reserved == body["tokens"]["reserved"] > 256  # the prompt's estimate plus max_tokens
    assert answer.headers["RateLimit"] == (
        f'"3-per-1-minute";r=2;t=60, "tokens-2000-per-1-hour";r={2000 - reserved};t=3600, '
        '"streams";r=4')
    assert answer.headers["X-RateLimit-Limit-Tokens"] == "2000"
    assert answer.headers["X-RateLimit-Reset-Tokens"] == "1h0m0s"


def test_without_a_token_budget_the_headers_list_the_request_policy_alone(
    make_client: ClientFactory, storage_uri: str
) -> None:
    answer = chat(make_client(storage_uri=storage_uri, token_limit="off", max_streams="off"))
    assert answer.headers["RateLimit-Policy"] == '"3-per-1-minute";q=3;w=60'
    assert answer.headers["RateLimit"] == '"3-per-1-minute";r=2;t=60'
    assert "X-RateLimit-Limit-Tokens" not in answer.headers
    assert answer.json()["tokens"] is None


def test_with_several_limits_the_headers_describe_the_tightest(
    make_client: ClientFactory, storage_uri: str
) -> None:
    client = make_client(storage_uri=storage_uri, rate_limit="5/minute;2/hour", token_limit="off",
                         max_streams="off")
    first = chat(client)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["RateLimit"] == '"2-per-1-hour";r=1;t=3600'
    assert first.headers["RateLimit-Policy"] == '"5-per-1-minute";q=5;w=60, "2-per-1-hour";q=2;w=3600'
    chat(client)
    third = chat(client)
    assert third.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert third.json()["detail"] == "Rate limit exceeded: 2 per 1 hour"


def test_every_response_names_the_instance(make_client: ClientFactory) -> None:
    client = make_client(instance_name="replica-b")
    for answer in (client.get("/"), client.get("/healthz"), client.get("/nope"), chat(client)):
        assert answer.headers["X-Served-By"] == "replica-b"


def test_quota_endpoint_consumes_nothing(make_client: ClientFactory, storage_uri: str) -> None:
    client = make_client(storage_uri=storage_uri)
    fresh = client.get("/api/quota").json()
    assert fresh["quota"] == {"limit": 3, "remaining": 3, "reset_after": 0}
    chat(client)
    for _ in range(5):
        seen = client.get("/api/quota").json()["quota"]
        assert seen["remaining"] == 2
        assert 55 <= seen["reset_after"] <= 60
    assert [chat(client).status_code for _ in range(3)] == [200, 200, 429]


def test_different_user_agents_have_separate_quotas(make_client: ClientFactory, storage_uri: str) -> None:
    client = make_client(storage_uri=storage_uri, rate_limit="1/minute")
    assert chat(client, agent="alice").status_code == HTTPStatus.OK
    assert chat(client, agent="alice").status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert chat(client, agent="bob").status_code == HTTPStatus.OK


def test_a_direct_client_cannot_mint_quota_with_x_forwarded_for(
    make_client: ClientFactory, storage_uri: str
) -> None:
    client = make_client(storage_uri=storage_uri, rate_limit="1/minute", peer="203.0.113.10")
    assert chat(client, forwarded="1.1.1.1").status_code == HTTPStatus.OK
    for spoof in ("2.2.2.2", "3.3.3.3, 4.4.4.4", "::1", "garbage"):
        assert chat(client, forwarded=spoof).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_quota(
    make_client: ClientFactory, storage_uri: str
) -> None:
    client = make_client(storage_uri=storage_uri, rate_limit="1/minute", peer="127.0.0.1")
    assert chat(client, forwarded="198.51.100.1").status_code == HTTPStatus.OK
    assert chat(client, forwarded="198.51.100.2").status_code == HTTPStatus.OK
    assert chat(client, forwarded="198.51.100.1").status_code == HTTPStatus.TOO_MANY_REQUESTS
    # What the client wrote to the left of the proxy's own entry changes nothing.
    spoofed = chat(client, forwarded="9.9.9.9, 198.51.100.1")
    assert spoofed.status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_rejected_input_consumes_no_quota(make_client: ClientFactory, storage_uri: str) -> None:
    client = make_client(storage_uri=storage_uri, rate_limit="1/minute")
    for _ in range(3):
        assert client.post("/chat", json={"message": ""}).status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert chat(client).status_code == HTTPStatus.OK


def test_with_the_limiter_disabled_nothing_is_limited(make_client: ClientFactory, storage_uri: str) -> None:
    client = make_client(storage_uri=storage_uri, rate_limit_enabled=False)
    answers = [chat(client) for _ in range(6)]
    assert {a.status_code for a in answers} == {HTTPStatus.OK}
    assert answers[0].json()["quota"] is None
    assert "X-RateLimit-Limit" not in answers[0].headers
    quota = client.get("/api/quota").json()
    assert {k: quota[k] for k in ("served_by", "enabled", "quota", "tier", "tokens", "streams")} == {
        "served_by": "test-1", "enabled": False, "quota": None, "tier": None, "tokens": None, "streams": None}


def test_storage_keys_hold_a_hash_never_the_address(make_client: ClientFactory, redis_url: str, redis_server: RedisServer) -> None:
    import redis

    client = make_client(storage_uri=redis_url, peer="127.0.0.1")
    chat(client, forwarded="198.51.100.77")
    keys = sorted(k.decode() for k in redis.Redis(port=redis_server.port).keys("*"))
    # The user's request and token keys and the per-address ceiling's, all under the hashed
    # address as hash tag (one Redis Cluster slot); the stream lease was released and is gone.
    assert len(keys) == 3
    tokens, user, address = keys
    assert re.fullmatch(r"chatlimit:\{[0-9a-f]{24}\}:[0-9a-f]{24}:fw:chat-tokens:2000/1hour", tokens)
    assert re.fullmatch(r"chatlimit:\{[0-9a-f]{24}\}:[0-9a-f]{24}:fw:chat:3/1minute", user)
    assert re.fullmatch(r"chatlimit:\{[0-9a-f]{24}\}:fw:chat:30/1minute", address)
    assert len({key.split("}")[0] for key in keys}) == 1
    assert all("198.51.100.77" not in key for key in keys)


@pytest.mark.parametrize("budget", ["off", "on"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_redis_round_trip_per_limited_request_and_one_more_to_settle_a_budget(
    make_client: ClientFactory, redis_url: str, redis_server: RedisServer, strategy: str, budget: str
) -> None:
    import redis

    extra = {} if budget == "on" else {"token_limit": "off", "max_streams": "off"}
    client = make_client(storage_uri=redis_url, rate_limit="1000/minute", rate_limit_strategy=strategy,
                         **extra)
    chat(client)  # loads the scripts
    admin = redis.Redis(port=redis_server.port)
    admin.config_resetstat()
    for _ in range(20):
        assert chat(client).status_code == HTTPStatus.OK
    stats = admin.info("commandstats")
    # Admission (requests, tokens and the stream slot together), then the settlement.
    per_request = 2 if budget == "on" else 1
    assert stats["cmdstat_evalsha"]["calls"] == 20 * per_request
    assert "cmdstat_ttl" not in stats  # slowapi's header lookups (GET, TTL) are gone
    assert round_trips(stats, strategy) == 20 * per_request


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_quota_returns_after_the_window(make_client: ClientFactory, storage_uri: str, strategy: str) -> None:
    client = make_client(storage_uri=storage_uri, rate_limit="2/second", rate_limit_strategy=strategy)
    assert [chat(client).status_code for _ in range(3)] == [200, 200, 429]
    retry_after = chat(client).json()["retry_after"]
    assert 1 <= retry_after <= 2
    deadline = time.monotonic() + 3
    while chat(client).status_code != HTTPStatus.OK:
        assert time.monotonic() < deadline, "quota did not come back within the window"
        time.sleep(0.05)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_after_the_minute_refuses_the_quota_reports_the_hour_that_still_refuses(
    make_client: ClientFactory, storage_uri: str, strategy: str
) -> None:
    # Told "a minute", the client would come back and be refused for the rest of the hour.
    client = make_client(storage_uri=storage_uri, rate_limit="3/minute;3/hour",
                         rate_limit_strategy=strategy, token_limit="off", max_streams="off")
    assert [chat(client).status_code for _ in range(4)] == [200, 200, 200, 429]
    answer = client.get("/api/quota")
    assert answer.json()["quota"] == {"limit": 3, "remaining": 0, "reset_after": 3600}
    assert answer.headers["RateLimit"] == '"3-per-1-hour";r=0;t=3600'
