"""Client identity: X-Forwarded-For is believed only from trusted proxies, right-most first."""

from __future__ import annotations

import ipaddress

import pytest

from chatlimit.identity import client_address, hashed

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
