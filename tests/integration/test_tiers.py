"""Tiers (API_KEYS, TIER_LIMITS) through slowapi's dynamic limits, on both engines: a known
key gets its tier's limit and its own quota, an unknown one a 401, no key the free tier; the
keys never show up in answers, storage keys or logs."""

from __future__ import annotations

import logging
from http import HTTPStatus
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from chatlimit.settings import SettingsError, load_settings
from chatlimit.tools.processes import RedisServer

from ..support import ClientFactory

pytestmark = [pytest.mark.integration]

ENGINES = ["chatlimit", "slowapi"]
PRO, FREE = "sk-pro-7f3a9c", "sk-free-41d2e8"
TIERS = {"api_keys": f"{PRO}=pro,{FREE}=free", "tier_limits": "free=2/minute;pro=4/minute"}


def chat(client: TestClient, key: str | None = None, agent: str = "agent", address: str = "198.51.100.7") -> int:
    headers = {"User-Agent": agent, "X-Forwarded-For": address}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return client.post("/chat", json={"message": "hi"}, headers=headers).status_code


def tiered(make_client: ClientFactory, engine: str, **overrides: str) -> TestClient:
    return make_client(peer="127.0.0.1", rate_limit_engine=engine, **{**TIERS, **overrides})


@pytest.mark.parametrize("engine", ENGINES)
def test_each_tier_gets_its_limit_and_a_key_is_one_client_wherever_it_comes_from(
    make_client: ClientFactory, engine: str
) -> None:
    client = tiered(make_client, engine)
    # The pro key from four addresses and agents: one quota of 4.
    pro = [chat(client, PRO, agent=f"a{n}", address=f"198.51.100.{n}") for n in range(5)]
    assert pro == [200, 200, 200, 200, 429]
    assert [chat(client, FREE) for _ in range(3)] == [200, 200, 429]
    # Anonymous is free, with a quota of its own (address and User-Agent).
    assert [chat(client) for _ in range(3)] == [200, 200, 429]
    quota = client.get("/api/quota", headers={"Authorization": f"Bearer {PRO}"}).json()
    assert quota["tier"] == "pro"
    assert quota["quota"] == {"limit": 4, "remaining": 0, "reset_after": quota["quota"]["reset_after"]}
    assert client.get("/api/quota").json()["tier"] == "free"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("authorization", [f"Bearer {PRO}x", "Basic dXNlcjpwYXNz", "Bearer "])
def test_an_unknown_or_malformed_key_is_401_json_and_consumes_nothing(
    make_client: ClientFactory, engine: str, authorization: str
) -> None:
    client = tiered(make_client, engine)
    for path, method in (("/chat", "post"), ("/api/quota", "get")):
        answer = client.request(method, path, json={"message": "hi"},
                                headers={"Authorization": authorization})
        assert answer.status_code == HTTPStatus.UNAUTHORIZED
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert PRO not in answer.text
    assert [chat(client, PRO) for _ in range(5)] == [200, 200, 200, 200, 429]


@pytest.mark.parametrize("engine", ENGINES)
def test_keys_never_reach_answers_the_page_the_log_or_storage_keys(
    make_client: ClientFactory, engine: str, redis_url: str, redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = tiered(make_client, engine, storage_uri=redis_url)
    texts = [client.get(path).text for path in ("/", "/api/info", "/api/quota")]
    for key in (PRO, FREE, "sk-unknown-1"):
        answer = client.post("/chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {key}"})
        texts += [answer.text, str(answer.headers)]
    info = client.get("/api/info").json()
    assert info["tiers"] == {"free": "2/minute", "pro": "4/minute"}
    stored = redis_server.command("KEYS", "*")
    assert stored  # the pro and free keys were counted
    for secret in (PRO, FREE, "sk-unknown-1"):
        assert all(secret not in text for text in texts)
        assert secret not in caplog.text
        assert secret not in str(stored)


def test_the_page_shows_the_tier_and_a_key_field_only_with_api_keys(make_client: ClientFactory) -> None:
    page = tiered(make_client, "chatlimit").get("/").text
    assert 'id="quota-tier"' in page and 'id="api-key" name="api-key" type="password"' in page
    assert 'id="api-key"' not in make_client().get("/").text


def test_api_keys_from_a_file(make_client: ClientFactory, tmp_path: Path) -> None:
    secret = tmp_path / "keys"
    secret.write_text(f"{PRO}=pro\n{FREE}=free\n")
    client = tiered(make_client, "chatlimit", api_keys=f"@{secret}")
    assert [chat(client, PRO) for _ in range(5)] == [200, 200, 200, 200, 429]


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"api_keys": f"{PRO}=gold"}, "API_KEYS"),
    ({"api_keys": f"{PRO}"}, "API_KEYS"),
    ({"api_keys": "@/nonexistent/keys"}, "API_KEYS"),
    ({"tier_limits": "pro=30/minute"}, "TIER_LIMITS"),
    ({"tier_limits": "free=3/fortnight"}, "TIER_LIMITS"),
])
def test_bad_tiers_or_keys_stop_start_up_in_one_line_without_the_key(
    overrides: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError) as failure:
        load_settings(**overrides)
    message = str(failure.value)
    assert message.startswith(f"{variable}=") and "\n" not in message
    assert PRO not in message
