"""A real Prometheus (Debian's) scraping three real replicas directly, while nginx's public
server never serves /metrics: what the client saw is what PromQL sums."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from chatlimit.tools.processes import MissingBinary, find_binary, free_port, wait_until
from chatlimit.tools.stack import LocalStack as Cluster

from ..support import descendants, metric, metric_samples, missing
from ..traffic import burst, statuses

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.nginx]

LIMIT = 5
SENT = 17


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    return make_cluster(replicas=3, storage="redis", prometheus=True, scrape_interval="1s",
                        env={"RATE_LIMIT": f"{LIMIT}/minute", "RATE_LIMIT_PER_ADDRESS": "off",
                             "TOKEN_LIMIT": "off", "MAX_STREAMS": "off"})


def test_nginx_answers_metrics_with_404_in_the_error_shape_even_per_replica(cluster: Cluster) -> None:
    for path in ("/metrics", "/metrics/", "/replica/app-1/metrics", "//metrics", "/%6Detrics"):
        answer = httpx.get(f"{cluster.url}{path}", timeout=5)
        assert answer.status_code == HTTPStatus.NOT_FOUND, path
        assert answer.json()["error"] == "not_found", path
        assert answer.headers["X-Served-By"] == "nginx", path
    # The replicas themselves serve it: that is where Prometheus scrapes.
    direct = httpx.get(f"{cluster.replica_urls['app-1']}/metrics", timeout=5)
    assert direct.status_code == HTTPStatus.OK
    assert "chatlimit_rate_limit_decisions_total" in direct.text
    # The page's figures stay public, through the per-replica routes.
    assert httpx.get(f"{cluster.url}/replica/app-2/api/stats", timeout=5).json()["served_by"] == "app-2"


def test_promql_sums_of_within_and_over_limit_equal_what_the_client_saw(cluster: Cluster) -> None:
    prometheus = cluster.prometheus
    assert prometheus is not None
    counted = statuses(burst(cluster.url, SENT, agent="prometheus-test"))
    allowed, refused = counted[HTTPStatus.OK], counted[HTTPStatus.TOO_MANY_REQUESTS]
    assert (allowed, refused) == (LIMIT, SENT - LIMIT)  # Redis holds the limit across replicas

    decisions = "chatlimit_rate_limit_decisions_total"
    within = f'sum({decisions}{{result="within_limit",kind="requests"}})'
    over = f'sum({decisions}{{result="over_limit",kind="requests"}})'

    def scraped() -> bool:
        return prometheus.value(within) == allowed and prometheus.value(over) == refused

    wait_until(scraped, timeout=30, interval=0.25, what="a scrape showing the burst")
    assert prometheus.value('count(up{job="chatlimit"} == 1)') == 3
    per_replica = prometheus.query(f'sum by (replica) ({decisions}{{kind="requests"}})')
    assert {r["metric"]["replica"] for r in per_replica} <= set(cluster.names)
    assert sum(float(r["value"][1]) for r in per_replica) == SENT
    # Each replica's own exposition agrees with what Prometheus stored from it.
    direct = sum(metric(metric_samples(httpx.get(f"{url}/metrics", timeout=5).text), decisions,
                        kind="requests") for url in cluster.replica_urls.values())
    assert direct == SENT


def test_chatlimit_cluster_prometheus_prints_its_url_scrapes_every_replica_and_stops_with_it(
    tmp_path: Path,
) -> None:
    for binary in ("nginx", "prometheus"):
        try:
            find_binary(binary)
        except MissingBinary as exc:
            missing(str(exc))
    port, prometheus_port = free_port(), free_port()
    out = tmp_path / "cluster.out"
    with out.open("wb") as sink:
        cluster = subprocess.Popen(
            [sys.executable, "-m", "chatlimit", "cluster", "--storage", "memory", "--replicas", "2",
             "--port", str(port), "--prometheus", "--prometheus-port", str(prometheus_port)],
            stdout=sink, stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k not in ("STORAGE_URI", "REDIS_URL")},
        )
    try:
        wait_until(lambda: "Ctrl-C" in out.read_text() or cluster.poll() is not None,
                   timeout=90, interval=0.1, what="chatlimit cluster --prometheus")
        banner = out.read_text()
        assert f"prometheus: http://127.0.0.1:{prometheus_port}" in banner, banner
        assert len(re.findall(r"http://127\.0\.0\.1:\d+/metrics", banner)) == 2
        children = descendants(cluster.pid)

        def both_up() -> bool:
            answer = httpx.get(f"http://127.0.0.1:{prometheus_port}/api/v1/query",
                               params={"query": 'sum(up{job="chatlimit"})'}, timeout=5).json()
            result = answer["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) == 2

        wait_until(both_up, timeout=30, interval=0.5, what="prometheus scraping both replicas")
        cluster.send_signal(signal.SIGTERM)
        assert cluster.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if cluster.poll() is None:
            cluster.kill()
            cluster.wait()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), timeout=20,
               what="the cluster's processes to exit")
