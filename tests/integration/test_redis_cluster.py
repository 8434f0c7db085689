"""STORAGE_URI=redis+cluster://: exact limits on a real three-primary Redis Cluster, every
strategy, each client's keys in one hash slot, and what losing one primary does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
import redis

from chatlimit.limiter.headers import DEGRADED_HEADER
from chatlimit.tools.processes import MissingBinary
from chatlimit.tools.redis_topologies import ClusterTopology

from ..support import STRATEGIES, ClientFactory, missing
from ..traffic import chat

pytestmark = [pytest.mark.integration, pytest.mark.redis]

PEERS = [f"203.0.113.{i}" for i in range(1, 13)]  # spread over the three primaries
TAG = re.compile(r"\{([^}]*)\}")


def start_cluster(workdir: Path) -> ClusterTopology:
    try:
        cluster = ClusterTopology(workdir)
    except MissingBinary as exc:
        missing(str(exc))
    return cluster.start()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_uri(redis_cluster: ClusterTopology) -> str:
    for node in redis_cluster.nodes:
        node.command("FLUSHALL")
    return redis_cluster.uri


def keys_by_node(cluster: ClusterTopology) -> list[set[str]]:
    found = []
    for node in cluster.nodes:
        client = redis.Redis(port=node.port, decode_responses=True, socket_timeout=2)
        try:
            found.append(set(client.keys("chatlimit:*")))
        finally:
            client.close()
    return found


def proxied(make_client: ClientFactory, uri: str, **overrides: str):  # type: ignore[no-untyped-def]
    """One app behind a trusted proxy, so each X-Forwarded-For is another client address."""
    return make_client(peer="127.0.0.1", storage_uri=uri, trusted_proxies="127.0.0.1", **overrides)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_counts_exactly_on_a_redis_cluster_with_each_clients_keys_in_one_slot(
    make_client: ClientFactory, redis_cluster: ClusterTopology, cluster_uri: str, strategy: str
) -> None:
    client = proxied(make_client, cluster_uri, rate_limit_strategy=strategy, rate_limit="3/minute;5/hour")
    for peer in PEERS:
        codes = [chat(client, forwarded=peer).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429], peer

    nodes = keys_by_node(redis_cluster)
    assert sum(1 for keys in nodes if keys) >= 2, "the clients should spread over the primaries"
    by_client: dict[str, set[int]] = {}
    for keys in nodes:
        for key in keys:
            by_client.setdefault(TAG.search(key)[1], set()).add(redis_cluster.keyslot(key))  # type: ignore[index]
    assert len(by_client) == len(PEERS)
    # Every key of one client (both limits, and the per-address ceiling) shares one slot:
    # one Lua script counts them together, which a cluster allows only within one slot.
    assert all(len(slots) == 1 for slots in by_client.values()), by_client
    per_client = {len([k for keys in nodes for k in keys if tag in k]) for tag in by_client}
    assert min(per_client) >= 2


def test_scripts_forgotten_by_the_nodes_are_loaded_again(
    make_client: ClientFactory, redis_cluster: ClusterTopology, cluster_uri: str
) -> None:
    client = proxied(make_client, cluster_uri)
    assert [chat(client, forwarded=p).status_code for p in PEERS] == [200] * len(PEERS)
    for node in redis_cluster.nodes:
        node.command("SCRIPT", "FLUSH")
    assert [chat(client, forwarded=p).status_code for p in PEERS] == [200] * len(PEERS)
    assert [chat(client, forwarded=p).status_code for p in PEERS] == [200] * len(PEERS)
    assert [chat(client, forwarded=p).status_code for p in PEERS] == [429] * len(PEERS)


def test_readyz_info_and_the_page_on_a_cluster_never_show_the_password(
    make_client: ClientFactory, redis_cluster: ClusterTopology
) -> None:
    uri = redis_cluster.uri.replace("://", "://:s3cret@")
    # The nodes have no password: readiness fails, yet nothing shows the secret.
    client = make_client(storage_uri=uri)
    info = client.get("/api/info").json()
    assert info["storage"] == {"kind": "redis", "uri": uri.replace("s3cret", "***")}
    ready = client.get("/readyz")
    assert "s3cret" not in ready.text
    page = client.get("/")
    assert page.status_code == HTTPStatus.OK
    assert "s3cret" not in page.text
    assert make_client(storage_uri=redis_cluster.uri).get("/readyz").status_code == HTTPStatus.OK


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_losing_one_primary_touches_only_the_clients_whose_keys_lived_there(
    make_client: ClientFactory, tmp_path: Path, fail_mode: str
) -> None:
    cluster = start_cluster(tmp_path)
    try:
        client = proxied(make_client, cluster.uri, fail_mode=fail_mode, rate_limit="3/minute")
        home: dict[str, int] = {}
        for peer in PEERS:
            before = keys_by_node(cluster)
            assert chat(client, forwarded=peer).status_code == HTTPStatus.OK
            after = keys_by_node(cluster)
            home[peer] = next(i for i in range(3) if after[i] - before[i])
        lost = home[PEERS[0]]
        cluster.stop_node(lost)
        assert len(set(home.values())) >= 2

        # Round robin, so requests for the lost node and the others interleave.
        answers: dict[str, list[tuple[int, bool]]] = {peer: [] for peer in PEERS}
        for _ in range(3):
            for peer in PEERS:
                answer = chat(client, forwarded=peer)
                answers[peer].append((answer.status_code, DEGRADED_HEADER in answer.headers))

        for peer, got in answers.items():
            if home[peer] != lost:
                assert got == [(200, False), (200, False), (429, False)], peer
            elif fail_mode == "open":
                assert got == [(200, True)] * 3, peer  # this replica's own count, one used
            else:
                assert [code for code, _ in got] == [503] * 3, peer
    finally:
        cluster.stop()

