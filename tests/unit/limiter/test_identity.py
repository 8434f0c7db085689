"""Client identity: X-Forwarded-For is believed only from trusted proxies, right-most first."""

from __future__ import annotations

import ipaddress
import re

import pytest
from starlette.requests import Request

from chatlimit.limiter.identity import (
    client_address,
    client_group,
    hashed,
    make_address_key_func,
    make_key_func,
)
from chatlimit.settings import Settings, SettingsError, load_settings

LOCAL_PROXY = (ipaddress.ip_network("127.0.0.1/32"),)
PROXY_CHAIN = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


def test_a_direct_client_is_its_peer_address_whatever_it_claims() -> None:
    assert client_address("203.0.113.7", ["1.2.3.4"], LOCAL_PROXY) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_forwarded_address_is_used() -> None:
    assert client_address("127.0.0.1", ["198.51.100.4"], LOCAL_PROXY) == "198.51.100.4"


def test_the_right_most_untrusted_hop_wins_over_what_the_client_prepended() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; nginx appended the real peer.
    assert client_address("127.0.0.1", ["1.2.3.4, 198.51.100.4"], LOCAL_PROXY) == "198.51.100.4"


def test_trusted_hops_in_a_chain_are_skipped() -> None:
    forwarded = ["6.6.6.6, 198.51.100.4, 10.1.2.3"]
    assert client_address("127.0.0.1", forwarded, PROXY_CHAIN) == "198.51.100.4"


def test_several_header_lines_are_one_chain() -> None:
    assert client_address("127.0.0.1", ["6.6.6.6", "198.51.100.4"], LOCAL_PROXY) == "198.51.100.4"


def test_garbage_in_the_chain_stops_at_the_last_verified_hop() -> None:
    assert client_address("127.0.0.1", ["198.51.100.4, not-an-ip"], LOCAL_PROXY) == "127.0.0.1"


def test_ipv6_and_ports_are_understood() -> None:
    assert client_address("127.0.0.1", ["[2001:db8::5]:4711"], LOCAL_PROXY) == "2001:db8::5"
    assert client_address("127.0.0.1", ["198.51.100.4:5000"], LOCAL_PROXY) == "198.51.100.4"
    assert client_address("::ffff:203.0.113.7", [], LOCAL_PROXY) == "203.0.113.7"


def test_an_empty_header_leaves_the_proxy_as_client() -> None:
    assert client_address("127.0.0.1", [], LOCAL_PROXY) == "127.0.0.1"


@pytest.mark.parametrize("parts", [("203.0.113.7", "curl/8"), ("2001:db8::1", "")])
def test_hashed_identity_never_contains_the_address(parts: tuple[str, str]) -> None:
    digest = hashed(*parts)
    assert parts[0] not in digest
    assert len(digest) == 24
    assert digest == hashed(*parts)
    assert digest != hashed(parts[0], "other agent")


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_client_is_counted_as_its_whole_slash_64(address: str, group: str) -> None:
    assert client_group(address) == group


def request_from(peer: str, user_agent: str = "", forwarded: str | None = None) -> Request:
    headers = [(b"user-agent", user_agent.encode())]
    if forwarded is not None:
        headers.append((b"x-forwarded-for", forwarded.encode()))
    scope = {"type": "http", "client": (peer, 50000), "headers": headers, "state": {}}
    return Request(scope)


def test_the_user_key_carries_the_hashed_address_as_its_slot_and_never_the_address() -> None:
    user_key = make_key_func(LOCAL_PROXY)
    address_key = make_address_key_func(LOCAL_PROXY)
    request = request_from("127.0.0.1", "curl/8", "198.51.100.4")
    address, user = user_key(request).split(":")
    assert address == address_key(request) == hashed("198.51.100.4")
    assert re.fullmatch(r"[0-9a-f]{24}", user)
    assert "198.51.100.4" not in user_key(request)


def test_agents_at_one_address_are_different_users_but_one_address() -> None:
    user_key = make_key_func(LOCAL_PROXY)
    address_key = make_address_key_func(LOCAL_PROXY)
    firefox, chrome = request_from("198.51.100.4", "Firefox"), request_from("198.51.100.4", "Chrome")
    assert user_key(firefox) != user_key(chrome)
    assert address_key(firefox) == address_key(chrome)


def test_two_addresses_in_one_ipv6_slash_64_are_one_client_for_both_keys() -> None:
    user_key = make_key_func(LOCAL_PROXY)
    address_key = make_address_key_func(LOCAL_PROXY)
    a, b = request_from("2001:db8::1", "Firefox"), request_from("2001:db8::ffff:2", "Firefox")
    other = request_from("2001:db8:0:1::1", "Firefox")
    assert user_key(a) == user_key(b) != user_key(other)
    assert address_key(a) == address_key(b) != address_key(other)


def test_a_forwarded_ipv6_client_is_grouped_by_slash_64_too() -> None:
    address_key = make_address_key_func(LOCAL_PROXY)
    one = request_from("127.0.0.1", forwarded="2001:db8:5::1")
    two = request_from("127.0.0.1", forwarded="[2001:db8:5::99]:443")
    assert address_key(one) == address_key(two) == hashed("2001:db8:5::/64")


def test_trusted_proxies_are_networks_so_a_whole_proxy_fleet_is_believed() -> None:
    fleet = (ipaddress.ip_network("10.0.0.0/8"),)
    forwarded = ["6.6.6.6, 198.51.100.4, 10.20.30.40"]
    assert client_address("10.16.3.80", forwarded, fleet) == "198.51.100.4"
    assert client_address("11.0.0.1", forwarded, fleet) == "11.0.0.1"


@pytest.mark.parametrize(
    ("rate_limit", "per_address", "ceiling"),
    [
        ("3/minute", "10x", "30 per 1 minute"),
        ("3/minute;20/hour", "10x", "30 per 1 minute;200 per 1 hour"),
        ("3/minute", "50/minute", "50/minute"),
        ("3/minute", "off", None),
        ("3/minute", "", None),
    ],
)
def test_rate_limit_per_address_is_a_limit_a_multiple_of_rate_limit_or_off(
    rate_limit: str, per_address: str, ceiling: str | None
) -> None:
    settings = load_settings(rate_limit=rate_limit, rate_limit_per_address=per_address)
    assert settings.address_limit == ceiling


def test_the_per_address_ceiling_defaults_to_ten_users_per_address() -> None:
    assert Settings().address_limit == "30 per 1 minute"


@pytest.mark.parametrize("bad", ["lots", "0x", "30 per fortnight"])
def test_a_bad_rate_limit_per_address_is_one_line_naming_the_variable(bad: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(rate_limit_per_address=bad)
    message = str(caught.value)
    assert message.startswith(f"RATE_LIMIT_PER_ADDRESS={bad!r} is invalid: accepts ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("hop", "expected"),
    [
        ("198.51.100.4", "198.51.100.4"),  # the fast path: strict dotted decimal
        (" 198.51.100.4 ", "198.51.100.4"),
        ("198.51.100.4:5000", "198.51.100.4"),  # a port: the general parser
        ("::ffff:198.51.100.4", "198.51.100.4"),  # IPv4-mapped IPv6: the IPv4 address
        ("010.1.2.3", "127.0.0.1"),  # leading zeros are no address: stop at the proxy
        ("1.2.3", "127.0.0.1"),  # nor is a short form inet_aton would accept
        ("256.1.2.3", "127.0.0.1"),
        ("1.2.3.4\x00", "127.0.0.1"),
        ("\u0661.\u0662.\u0663.\u0664", "127.0.0.1"),  # Arabic-Indic digits: isdigit() says yes
    ],
)
def test_the_ipv4_fast_path_agrees_with_the_general_parser(hop: str, expected: str) -> None:
    assert client_address("127.0.0.1", [hop], LOCAL_PROXY) == expected


def test_trust_in_ipv4_networks_is_decided_by_mask_on_the_fast_path() -> None:
    fleet = (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("127.0.0.1/32"))
    # 10.1.x.x hops are skipped as proxies; 10.2.0.1 is outside the /16, so it is the client.
    assert client_address("127.0.0.1", ["10.2.0.1, 10.1.255.254, 10.1.0.1"], fleet) == "10.2.0.1"
    assert client_address("10.1.9.9", [], fleet) == "10.1.9.9"  # trusted, nothing forwarded
    assert client_address("10.0.255.255", ["203.0.113.9"], fleet) == "10.0.255.255"  # untrusted
