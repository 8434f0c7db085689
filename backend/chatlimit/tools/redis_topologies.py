"""Beyond one Redis, for real on loopback: a Sentinel-watched primary with one replica, and a
three-primary Redis Cluster. Each server has its own ports, data directory and log.

`chatlimit cluster --redis sentinel|cluster` and the tests start these same topologies, so the
failover people watch is the one that is tested.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from .processes import Process, RedisServer, find_binary, free_port, wait_until

SERVICE = "chatlimit"
# How fast Sentinel reacts: a primary silent for DOWN_AFTER_MS is down for one sentinel; with
# QUORUM of them agreeing, one is elected to promote the replica.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2


def _client(port: int, password: str | None = None) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: a probe of a stopped server should say so at once.
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1,
        decode_responses=True, retry=Retry(NoBackoff(), 0), password=password,
    )


def _ask(port: int, question: Any, password: str | None = None) -> Any:
    """The answer of the server on `port`, or None when it does not answer."""
    import redis

    client = _client(port, password)
    try:
        return question(client)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _answers(port: int, check: Any, password: str | None = None) -> bool:
    return bool(_ask(port, check, password))


def _replica_streaming(primary: Any) -> bool:
    """The replica has acknowledged a write. Its link shows "up" earlier, but after a diskless
    full sync the primary streams nothing until the replica's first REPLCONF ACK (up to a
    second later): a primary lost in that second would take every write since with it."""
    primary.publish("__chatlimit__:topology", "ready")  # replicated, and leaves no key
    return int(primary.execute_command("WAIT", 1, 500)) >= 1


class _Server(RedisServer):
    """A redis-server whose readiness check logs in when it requires a password."""

    def __init__(self, workdir: Path, *, password: str | None = None, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.password = password

    def ping(self) -> bool:
        return _answers(self.port, lambda c: c.ping(), self.password)


class SentinelTopology:
    """One primary, one replica and three sentinels (quorum 2) watching service `chatlimit`."""

    def __init__(self, workdir: Path, *, sentinels: int = 3, password: str | None = None) -> None:
        """With `password`, every server and sentinel requires it (requirepass), as the
        URI's user:password@ then logs in at both."""
        self.workdir = workdir
        self.password = password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        # No 5-second wait for more replicas before a full sync (either may become primary).
        quick_sync = ["--repl-diskless-sync-delay", "0", *auth]
        self.primary = _Server(workdir, name="redis-primary", extra_args=quick_sync,
                               password=password)
        self.replica = _Server(
            workdir, name="redis-replica", password=password,
            extra_args=[*quick_sync, "--replicaof", "127.0.0.1", str(self.primary.port)],
        )
        self.binary = self.primary.binary
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_ids = [os.urandom(20).hex() for _ in range(sentinels)]
        self.sentinels = [
            Process(f"sentinel-{i + 1}", [self.binary, str(self._conf_path(i)), "--sentinel"],
                    workdir / f"sentinel-{i + 1}.log")
            for i in range(sentinels)
        ]

    @property
    def uri(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        login = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{login}{hosts}/{SERVICE}"

    url = uri  # what chatlimit.cluster.Cluster reads from the Redis it is given

    @property
    def servers(self) -> list[RedisServer]:
        return [self.primary, self.replica]

    def _conf_path(self, index: int) -> Path:
        return self.workdir / f"sentinel-{index + 1}" / "sentinel.conf"

    def _write_conf(self, index: int) -> None:
        path = self._conf_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.password:  # the sentinels' own password, theirs to the data nodes and each other
            auth = (f"requirepass {self.password}\nsentinel auth-pass {SERVICE} {self.password}\n"
                    f"sentinel sentinel-pass {self.password}\n")
        # Sentinel rewrites its own config file (it records what it learns), so each has one.
        path.write_text(
            f"port {self.sentinel_ports[index]}\nbind 127.0.0.1\nprotected-mode no\n"
            f"daemonize no\nlogfile \"\"\ndir {path.parent}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
            f"{auth}"
            # Introduced up front: discovering each other through hello messages takes seconds.
            f"sentinel myid {self.sentinel_ids[index]}\n"
            f"sentinel known-replica {SERVICE} 127.0.0.1 {self.replica.port}\n"
            + "".join(
                f"sentinel known-sentinel {SERVICE} 127.0.0.1 {port} {self.sentinel_ids[other]}\n"
                for other, port in enumerate(self.sentinel_ports) if other != index
            )
        )

    def start(self, timeout: float = 30.0) -> SentinelTopology:
        try:
            self.primary.start()
            self.replica.start()
            wait_until(
                lambda: _answers(self.primary.port, _replica_streaming, self.password),
                timeout=timeout, what="the replica's link to the primary",
            )
            # Sentinels start after the replica is linked, so their first INFO already lists it
            # (otherwise they learn of it only on the next 10-second INFO).
            for index, sentinel in enumerate(self.sentinels):
                self._write_conf(index)
                sentinel.start()
            wait_until(self._sentinels_agree, timeout=timeout, what="three sentinels")
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinels_agree(self) -> bool:
        others = len(self.sentinels) - 1

        def settled(client: Any) -> bool:
            state = client.sentinel_master(SERVICE)
            return int(state["num-other-sentinels"]) >= others and int(state["num-slaves"]) >= 1

        return all(_answers(port, settled, self.password) for port in self.sentinel_ports)

    def primary_port(self) -> int | None:
        """The port the sentinels currently name as primary (None if none answers)."""
        for port in self.sentinel_ports:
            address = _ask(port, lambda c: c.sentinel_get_master_addr_by_name(SERVICE),
                           self.password)
            if address:
                return int(address[1])
        return None

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary: a crash, with no graceful hand-over of its last writes (a
        SIGTERM'd primary waits for its replica to catch up before it exits)."""
        port = self.primary_port()
        server = next(s for s in self.servers if s.port == port)
        server.process.signal(signal.SIGKILL)
        server.stop()
        return server

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> int:
        wait_until(lambda: self.primary_port() not in (None, old_port), timeout=timeout,
                   interval=0.05, what="a promoted primary")
        port = self.primary_port()
        assert port is not None
        return port

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> SentinelTopology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClusterTopology:
    """A Redis Cluster of three primaries and no replicas, created with redis-cli."""

    def __init__(self, workdir: Path, *, primaries: int = 3, node_timeout_ms: int = 1000) -> None:
        self.workdir = workdir
        self.cli = find_binary("redis-cli")
        self.nodes = []
        for index in range(primaries):
            # cluster-port pins the bus port: the default (port + 10000) may be taken, or
            # past 65535 for a port from the ephemeral range.
            self.nodes.append(RedisServer(workdir, name=f"redis-node-{index + 1}", extra_args=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-port", str(free_port()),
                "--cluster-announce-ip", "127.0.0.1",
                # Without replicas a lost primary leaves its slots uncovered; the other
                # primaries keep serving theirs instead of refusing everything (CLUSTERDOWN).
                "--cluster-require-full-coverage", "no",
            ]))

    @property
    def uri(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    url = uri

    def start(self, timeout: float = 30.0) -> ClusterTopology:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                 "--cluster-yes"],
                check=True, capture_output=True, text=True, timeout=timeout,
            )
            wait_until(self._healthy, timeout=timeout, what="the Redis Cluster")
        except subprocess.CalledProcessError as exc:
            self.stop()
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{exc.stdout}{exc.stderr}"
            ) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        def ok(client: Any) -> bool:
            text = client.execute_command("CLUSTER", "INFO")
            info = dict(line.split(":", 1) for line in text.split() if ":" in line)
            return info.get("cluster_state") == "ok" and int(
                info.get("cluster_known_nodes", 0)) == len(self.nodes)

        return all(_answers(node.port, ok) for node in self.nodes)

    def keyslot(self, key: str) -> int:
        return int(self.nodes[0].command("CLUSTER", "KEYSLOT", key).lstrip(":"))

    def stop_node(self, index: int) -> RedisServer:
        self.nodes[index].stop()
        return self.nodes[index]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ClusterTopology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


REDIS_KINDS = ("single", "sentinel", "cluster")


def start_redis(kind: str, workdir: Path) -> SentinelTopology | ClusterTopology | None:
    """Start the topology `chatlimit cluster --redis KIND` runs. None for "single": the scaled
    cluster starts its own redis-server then."""
    if kind == "single":
        return None
    if kind == "sentinel":
        return SentinelTopology(workdir / "sentinel").start()
    if kind == "cluster":
        return ClusterTopology(workdir / "redis-cluster").start()
    raise ValueError(f"--redis accepts {', '.join(REDIS_KINDS)}")
