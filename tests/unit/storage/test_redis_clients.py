"""Sentinel and Cluster URIs as `limits` writes them: parsed, validated, masked."""

from __future__ import annotations

import pytest

from chatlimit.settings import SettingsError, load_settings
from chatlimit.storage.redis_clients import redis_client
from chatlimit.uri import mask_uri, parse_storage_uri


def test_a_sentinel_uri_names_every_sentinel_the_service_and_the_database() -> None:
    location = parse_storage_uri("redis+sentinel://app:p%40ss@s1:26379, s2:26380/mymaster/2")
    assert location.hosts == (("s1", 26379), ("s2", 26380))
    assert (location.username, location.password) == ("app", "p@ss")
    assert location.sentinel_service() == ("mymaster", 2)
    assert parse_storage_uri("redis+sentinel://s1:26379/mymaster").sentinel_service() == ("mymaster", 0)


def test_a_cluster_uri_names_its_startup_nodes_and_a_password_alone() -> None:
    location = parse_storage_uri("redis+cluster://:secret@n1:7000,n2:7001,[::1]:7002")
    assert location.hosts == (("n1", 7000), ("n2", 7001), ("::1", 7002))
    assert (location.username, location.password) == (None, "secret")


def test_the_sentinels_own_password_comes_from_the_query() -> None:
    location = parse_storage_uri("redis+sentinel://:data@s1:26379/m?sentinel_password=watch")
    assert location.password == "data"
    assert location.query == {"sentinel_password": "watch"}


@pytest.mark.parametrize("uri", [
    "redis+sentinel://s1:26379",             # no service name
    "redis+sentinel://s1:26379/a/b/c",       # too many path parts
    "redis+sentinel://s1/mymaster",          # no port
    "redis+cluster://n1",                    # no port
    "redis+cluster://",                      # no node at all
])
def test_a_sentinel_or_cluster_uri_without_its_servers_stops_start_up_in_one_line(uri: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(storage_uri=uri)
    assert str(error.value).startswith("STORAGE_URI=")
    assert "redis+sentinel://host:26379" in str(error.value)


@pytest.mark.parametrize(("uri", "shown"), [
    ("redis+sentinel://u:pw@s1:1,s2:2/m", "redis+sentinel://u:***@s1:1,s2:2/m"),
    ("redis+cluster://:pw@n1:1,n2:2", "redis+cluster://:***@n1:1,n2:2"),
    ("redis+sentinel://s1:1/m?sentinel_password=pw", "redis+sentinel://s1:1/m?sentinel_password=***"),
])
def test_passwords_in_multi_host_uris_are_masked(uri: str, shown: str) -> None:
    assert mask_uri(uri) == shown


def test_every_client_has_bounded_waits_and_at_most_one_retry() -> None:
    sentinel = redis_client(parse_storage_uri("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/m"),
                            connect_timeout=0.3, socket_timeout=0.4)
    pool = sentinel.connection_pool.connection_kwargs
    assert (pool["socket_connect_timeout"], pool["socket_timeout"]) == (0.3, 0.4)
    assert pool["retry"].get_retries() == 1
    for watcher in sentinel.sentinels.sentinels:
        kwargs = watcher.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["password"]) == (0.4, "pw")
        assert kwargs["retry"].get_retries() == 1
    cluster = redis_client(parse_storage_uri("redis+cluster://127.0.0.1:1"), connect_timeout=0.3, socket_timeout=0.4)
    assert cluster.retry.get_retries() == 1
    assert cluster.connection_kwargs["socket_timeout"] == 0.4
