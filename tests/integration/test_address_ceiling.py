"""RATE_LIMIT_PER_ADDRESS: rotating the User-Agent does not mint fresh quotas.

The user's key is address plus User-Agent (the guide's); a coarser ceiling per address (an IPv6
/64 counts as one) caps what one address gets however many agents it claims.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest

from ..support import STRATEGIES, ClientFactory
from ..traffic import chat

# Request policies only: the token budget and stream leases have their own tests, and here
# the headers must list exactly the user's limit and the address ceiling.
REQUESTS_ONLY = {"token_limit": "off", "max_streams": "off"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_hundred_user_agents_from_one_address_are_capped_by_the_ceiling(
    make_client: ClientFactory, storage_uri: str, strategy: str
) -> None:
    client = make_client(**REQUESTS_ONLY, storage_uri=storage_uri, rate_limit_strategy=strategy)
    answers = [chat(client, agent=f"agent-{n}") for n in range(100)]
    codes = [a.status_code for a in answers]
    assert codes == [HTTPStatus.OK] * 30 + [HTTPStatus.TOO_MANY_REQUESTS] * 70
    refused = answers[30]
    body = refused.json()
    assert body["detail"] == "Rate limit exceeded: 30 per 1 minute from one address"
    assert body["quota"]["limit"] == 30
    assert refused.headers["X-RateLimit-Limit"] == "30"
    assert refused.headers["RateLimit-Policy"] == (
        '"3-per-1-minute";q=3;w=60, "30-per-1-minute";q=30;w=60'
    )
    assert int(refused.headers["Retry-After"]) >= 1


def test_below_the_ceiling_the_headers_describe_the_users_own_limit(
    make_client: ClientFactory, storage_uri: str
) -> None:
    client = make_client(**REQUESTS_ONLY, storage_uri=storage_uri)
    for n in range(29):
        assert chat(client, agent=f"agent-{n}").status_code == HTTPStatus.OK
    last = chat(client, agent="the-thirtieth")  # the address has 0 left; this user has 2
    assert last.status_code == HTTPStatus.OK
    assert last.json()["quota"] == {"limit": 3, "remaining": 2, "reset_after": 60}
    assert last.headers["X-RateLimit-Limit"] == "3"
    assert last.headers["RateLimit-Policy"] == '"3-per-1-minute";q=3;w=60'


def test_quota_shows_the_ceiling_once_it_would_refuse_the_next_message(
    make_client: ClientFactory, storage_uri: str
) -> None:
    client = make_client(**REQUESTS_ONLY, storage_uri=storage_uri)
    fresh = client.get("/api/quota", headers={"User-Agent": "newcomer"}).json()["quota"]
    assert fresh["limit"] == 3
    for n in range(30):
        chat(client, agent=f"agent-{n}")
    exhausted = client.get("/api/quota", headers={"User-Agent": "newcomer"})
    assert exhausted.json()["quota"]["limit"] == 30
    assert exhausted.json()["quota"]["remaining"] == 0
    assert exhausted.headers["X-RateLimit-Limit"] == "30"


def test_a_user_refused_by_their_own_limit_does_not_use_up_the_address(
    make_client: ClientFactory, storage_uri: str
) -> None:
    client = make_client(**REQUESTS_ONLY, storage_uri=storage_uri)
    greedy = [chat(client, agent="greedy").status_code for _ in range(20)]
    assert greedy == [HTTPStatus.OK] * 3 + [HTTPStatus.TOO_MANY_REQUESTS] * 17
    others = [chat(client, agent=f"colleague-{n}").status_code for n in range(28)]
    # 3 from greedy + 27 from colleagues = the ceiling of 30; greedy's 17 refusals cost nothing.
    assert others == [HTTPStatus.OK] * 27 + [HTTPStatus.TOO_MANY_REQUESTS]


def test_other_addresses_keep_their_own_ceiling(make_client: ClientFactory, storage_uri: str) -> None:
    office = make_client(**REQUESTS_ONLY, storage_uri=storage_uri, peer="198.51.100.20")
    for n in range(31):
        chat(office, agent=f"agent-{n}")
    assert chat(office, agent="late").status_code == HTTPStatus.TOO_MANY_REQUESTS
    home = make_client(**REQUESTS_ONLY, storage_uri=storage_uri, peer="198.51.100.21")
    assert chat(home, agent="late").status_code == HTTPStatus.OK


def test_an_ipv6_slash_64_shares_one_ceiling_and_the_next_slash_64_does_not(
    make_client: ClientFactory, redis_url: str
) -> None:
    # One Redis, several apps standing in for requests from different IPv6 source addresses.
    def from_peer(peer: str):  # type: ignore[no-untyped-def]
        return make_client(**REQUESTS_ONLY, storage_uri=redis_url, peer=peer, rate_limit_per_address="4/minute")

    rotating = [from_peer(f"2001:db8:aa:bb::{n:x}") for n in range(1, 6)]
    codes = [chat(client, agent=f"agent-{n}").status_code for n, client in enumerate(rotating)]
    assert codes == [HTTPStatus.OK] * 4 + [HTTPStatus.TOO_MANY_REQUESTS]
    neighbour = from_peer("2001:db8:aa:bc::1")
    assert chat(neighbour, agent="agent-0").status_code == HTTPStatus.OK


def test_with_the_ceiling_off_only_the_users_limit_applies(
    make_client: ClientFactory, storage_uri: str
) -> None:
    client = make_client(**REQUESTS_ONLY, storage_uri=storage_uri, rate_limit_per_address="off")
    answers = [chat(client, agent=f"agent-{n}") for n in range(100)]
    assert {a.status_code for a in answers} == {HTTPStatus.OK}


def test_one_request_is_counted_once_against_each_key(
    make_client: ClientFactory, redis_url: str
) -> None:
    import redis

    client = make_client(**REQUESTS_ONLY, storage_uri=redis_url)
    assert chat(client, agent="curl/8").json()["quota"]["remaining"] == 2
    store = redis.Redis.from_url(redis_url)
    counts = sorted(int(store.get(key) or 0) for key in store.keys("chatlimit:*"))
    assert counts == [1, 1]
