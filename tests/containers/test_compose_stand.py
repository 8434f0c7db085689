"""The compose files, run for real: `docker compose up` then `chatlimit compare`, as a user would.

Podman stands in for Docker (tests/containers/README.md); the compose files and the Dockerfile
run unchanged. Tests run in file order and share one engine; each brings up what it needs.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator

import httpx
import pytest

from chatlimit.tools.processes import wait_until

from ..support import IN_CI, missing
from .stand import (
    Project,
    Stand,
    StandError,
    compare,
    stand_processes,
    wait_for_no_stand_processes,
)

pytestmark = pytest.mark.containers

SINGLE_URL = "http://127.0.0.1:8000"
SCALED_URL = "http://127.0.0.1:8080"
PROMETHEUS_URL = "http://127.0.0.1:9090"
# Scaled runs use a limit of 10 and 30 requests: 10 allowed when Redis is shared, 3 x 10 when
# each replica counts alone.
SCALED_ENV = {"RATE_LIMIT": "10/minute", "TOKEN_LIMIT": "1000/hour"}
ENFORCED_TOKENS = r"ENFORCED: [\d,]+ of 1,000 tokens billed \(budget 1,000\)"


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    stand = Stand()
    with stand.exclusive():
        try:
            stand.prepare()
        except StandError as exc:
            if shutil.which("podman") is None and not IN_CI:
                missing(f"podman could not be installed for the container stand: {exc}")
            pytest.fail(f"the container stand could not be prepared: {exc}")
        stand.engine_start()
        yield stand
        stand.engine_stop()


@pytest.fixture(scope="class")
def scaled(stand: Stand) -> Iterator[Project]:
    project = stand.project("docker-compose.scaled.yml", "chatlimit-stand-scaled", [8080],
                            SCALED_ENV)
    with project.running():
        yield project


def test_a_taken_host_port_fails_at_once_naming_its_process() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        project = Stand().project("docker-compose.yml", "chatlimit-stand-ports", [port])

        # Named by pid, not by name: the holder is "python" or "pytest" depending on how the
        # suite was started.
        with pytest.raises(StandError, match=rf"host port {port}, .* is taken by: .*pid={os.getpid()},"):
            project.check_ports()


def test_single_container_compose_enforces_the_limit_of_three(stand: Stand) -> None:
    single = stand.project("docker-compose.yml", "chatlimit-stand-single", [8000])
    with single.running():
        result = compare(SINGLE_URL, requests=6, expect="enforced")

    assert result.verdict == "ENFORCED: 3 of 6 allowed (limit 3)", result.output
    assert result.returncode == 0, result.output
    assert result.served_by == {"app"}, result.output


class TestScaledCompose:
    def test_three_replicas_sharing_redis_enforce_one_limit(self, scaled: Project) -> None:
        result = compare(SCALED_URL, requests=30, expect="enforced")

        assert result.verdict == "ENFORCED: 10 of 30 allowed (limit 10)", result.output
        assert result.returncode == 0, result.output
        assert result.served_by == {"app-1", "app-2", "app-3"}, result.output

    def test_three_replicas_sharing_redis_hold_one_token_budget(self, scaled: Project) -> None:
        result = compare(SCALED_URL, requests=20, expect="enforced", tokens=True)

        # The bill is the model's ledger, read through nginx at /model/v1/ledger.
        assert re.fullmatch(ENFORCED_TOKENS, result.verdict), result.output
        assert result.returncode == 0, result.output

    def test_redis_data_survives_down_and_up_on_the_named_volume(self, scaled: Project) -> None:
        marker = secrets.token_hex(8)
        assert scaled.exec("redis", "redis-cli", "SET", "stand:marker", marker) == "OK"

        scaled.down(volumes=False)
        assert f"{scaled.name}_redis-data" in scaled.stand.podman("volume", "ls", "--format",
                                                                   "{{.Name}}")
        scaled.up()

        assert scaled.exec("redis", "redis-cli", "GET", "stand:marker") == marker

    def test_the_monitoring_profile_scrapes_every_replica_and_sums_what_compare_saw(
        self, scaled: Project
    ) -> None:
        # What docs/metrics.md tells a user: `--profile monitoring up`. Prometheus scrapes each
        # replica on the compose network; nginx's public server never serves /metrics.
        scaled.up(env={**SCALED_ENV, "COMPOSE_PROFILES": "monitoring"})
        decisions = "chatlimit_rate_limit_decisions_total"
        within = f'sum({decisions}{{result="within_limit",kind="requests"}})'
        over = f'sum({decisions}{{result="over_limit",kind="requests"}})'

        def value(query: str) -> float | None:
            try:
                answer = httpx.get(f"{PROMETHEUS_URL}/api/v1/query", params={"query": query},
                                   timeout=5).json()["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                return None
            return float(answer[0]["value"][1]) if answer else 0.0

        # Counters live as long as the replicas; what earlier tests sent is the baseline.
        wait_until(lambda: value("sum(up)") == 3.0, timeout=120, what="three scraped replicas")
        before = (value(within) or 0.0, value(over) or 0.0)
        result = compare(SCALED_URL, requests=30, expect="enforced")
        assert result.returncode == 0, result.output
        assert httpx.get(f"{SCALED_URL}/metrics", timeout=10).status_code == 404

        wanted = (before[0] + 10, before[1] + 20)
        wait_until(lambda: (value(within), value(over)) == wanted, timeout=120,
                   what=f"Prometheus's sums to reach {wanted}")
        # Back to the class's topology for the tests after this one.
        scaled.compose("--profile", "monitoring", "rm", "-s", "-f", "-v", "prometheus", timeout=120)
        scaled.env = dict(SCALED_ENV)

    def test_memory_storage_lets_each_replica_count_alone(self, scaled: Project) -> None:
        # What a user types: `STORAGE_URI=memory:// docker compose -f ... up`. Compose recreates
        # the replicas (new addresses) and restarts nginx after them (depends_on restart: true).
        scaled.up(env={**SCALED_ENV, "STORAGE_URI": "memory://"})

        result = compare(SCALED_URL, requests=30, expect="bypassed")

        assert result.verdict.startswith("BYPASSED: 30 of 30 allowed, limit 10"), result.output
        assert result.returncode == 0, result.output
        assert result.served_by == {"app-1", "app-2", "app-3"}, result.output

        tokens = compare(SCALED_URL, requests=20, expect="bypassed", tokens=True)
        assert re.fullmatch(r"BYPASSED: [\d,]+ tokens billed, budget 1,000: each replica counts "
                            r"alone", tokens.verdict), tokens.output
        assert tokens.returncode == 0, tokens.output


def test_the_stand_leaves_no_containers_networks_volumes_or_processes(stand: Stand) -> None:
    assert stand.leftovers() == {"containers": [], "pods": [], "networks": [], "volumes": []}

    stand.engine_stop()

    assert wait_for_no_stand_processes() == [], stand_processes()
