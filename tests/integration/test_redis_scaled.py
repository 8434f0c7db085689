"""`chatlimit cluster --redis sentinel|cluster`: three replicas behind nginx on the real
topologies, exact for every strategy, and everything stopped cleanly."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatlimit.tools.processes import MissingBinary, Process, free_port, port_open, wait_until
from chatlimit.tools.redis_topologies import ClusterTopology

from ..support import STRATEGIES, missing
from ..traffic import burst, codes, send, statuses
from .test_redis_cluster import start_cluster

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.nginx]


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_three_replicas_behind_nginx_on_a_redis_cluster_allow_exactly_the_limit(
    tmp_path: Path, redis_cluster: ClusterTopology, strategy: str
) -> None:
    from chatlimit.tools.stack import LocalStack as Cluster

    for node in redis_cluster.nodes:
        node.command("FLUSHALL")
    try:
        scaled = Cluster(tmp_path, replicas=3, redis=redis_cluster,  # type: ignore[arg-type]
                         # Request limits only: 5 stream slots would refuse the burst first.
                         env={"RATE_LIMIT": "10/minute", "RATE_LIMIT_STRATEGY": strategy,
                              "TOKEN_LIMIT": "off", "MAX_STREAMS": "off"})
    except MissingBinary as exc:
        missing(str(exc))
    with scaled:
        counted = statuses(burst(scaled.url, 300, "hi", timeout=30))
        served_by = {httpx.get(f"{scaled.url}/api/info").json()["instance"] for _ in range(6)}
    assert counted == {200: 10, 429: 290}
    assert served_by == {"app-1", "app-2", "app-3"}


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_chatlimit_cluster_runs_on_sentinel_or_redis_cluster_and_stops_it_all(
    tmp_path: Path, kind: str
) -> None:
    for binary in ("redis-server", "redis-cli", "nginx"):
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            missing(f"{binary} not found")
    port = free_port()
    env = {**os.environ, "RATE_LIMIT": "3/minute", "TMPDIR": str(tmp_path)}
    command = Process("chatlimit-cluster", [sys.executable, "-m", "chatlimit", "cluster",
                      "--redis", kind, "--port", str(port)], tmp_path / "cluster.log", env=env)
    command.start()
    try:
        wait_until(lambda: "ready:" in command.log_path.read_text() or not command.alive(),
                   timeout=60, what="chatlimit cluster")
        log = command.log_path.read_text()
        assert f"redis+{kind}://" in log, log
        url = f"http://127.0.0.1:{port}"
        assert codes(send(url, 4, "hi")) == [200, 200, 200, 429]
        assert httpx.get(f"{url}/api/info").json()["storage"]["uri"].startswith(f"redis+{kind}://")
        redis_ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", log.split("storage:")[1])]
        assert redis_ports
    finally:
        command.signal(signal.SIGINT)
        assert command.stop(timeout=30) == 128 + signal.SIGINT
    assert "stopped" in command.log_path.read_text()
    assert not any(port_open(p) for p in [port, *redis_ports])
