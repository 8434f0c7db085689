"""`chatlimit cluster` and `chatlimit compare`: the command-line side of scaled mode."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from .settings import load_settings


def add_parsers(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="run N replicas behind nginx (sharing redis-server, or memory), in the foreground",
        description="Redis, N `chatlimit serve` replicas and nginx on loopback, as "
        "docker-compose.scaled.yml runs them. RATE_LIMIT, RATE_LIMIT_STRATEGY and the other "
        "variables pass through to the replicas. Ctrl-C or SIGTERM stops everything.",
    )
    cluster.add_argument("--replicas", type=_positive, default=3, help="replicas (default 3)")
    cluster.add_argument("--storage", choices=["redis", "memory"], default="redis",
                         help="shared redis-server (default), or memory: each replica alone")
    cluster.add_argument("--port", type=int, default=8080, help="nginx's port (default 8080)")
    cluster.add_argument("--redis", choices=["single", "sentinel", "cluster"], default="single",
                         help="the shared Redis: one redis-server (default), a primary with a "
                         "replica and three sentinels, or a three-primary Redis Cluster")
    cluster.set_defaults(func=run_cluster)

    compare = commands.add_parser(
        "compare",
        help="send the guide's requests as one client and say whether the limit held",
        description="Sends N chat messages as one client and prints who served each, the "
        "status and the remaining quota, then ENFORCED or BYPASSED.",
    )
    compare.add_argument("url", help="the deployment, e.g. http://127.0.0.1:8080")
    compare.add_argument("--requests", type=_positive, default=6, help="messages (default 6)")
    compare.add_argument("--concurrency", type=_positive, default=1,
                         help="send this many at once (default 1: one after another)")
    compare.add_argument("--expect", choices=["enforced", "bypassed"],
                         help="exit 1 unless the verdict is this")
    compare.add_argument("--limit", type=_positive,
                         help="the limit (default: read from X-RateLimit-Limit or /api/info)")
    compare.set_defaults(func=run_compare)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Once stopping, a second Ctrl-C must not interrupt the clean-up half way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Stop(signum)


def run_cluster(args: argparse.Namespace) -> int:
    from .cluster import Cluster, ClusterError
    from .redis_topologies import start_redis
    from .servers import MissingBinary

    # The replicas read the same environment: refuse a bad RATE_LIMIT here, in one line.
    load_settings(storage_uri="memory://")
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="chatlimit-cluster-"))
    cluster = topology = None
    try:
        if args.storage == "memory" and args.redis != "single":
            print("chatlimit cluster: --redis needs --storage redis", file=sys.stderr)
            return 2
        topology = start_redis(args.redis, workdir)  # None: the cluster starts one redis
        cluster = Cluster(workdir, replicas=args.replicas, storage=args.storage, port=args.port,
                          redis=topology, die_with_parent=True)  # type: ignore[arg-type]
        print(f"chatlimit cluster: starting {args.replicas} replicas ({args.storage}) "
              f"behind nginx at {cluster.url}; logs in {workdir}", flush=True)
        cluster.start()
        storage = cluster.redis.url if cluster.redis else "memory:// (each replica counts alone)"
        print(f"ready: {cluster.url}", flush=True)
        print(f"replicas: {', '.join(cluster.names)} (each at {cluster.url}/replica/<name>/)",
              flush=True)
        print(f"storage: {storage}", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        return _supervise(cluster)
    except MissingBinary as exc:
        print(f"chatlimit cluster: {exc}", file=sys.stderr)
        return 1
    except ClusterError as exc:
        print(f"chatlimit cluster: {exc}", file=sys.stderr)
        return 1
    except _Stop as stop:
        return 128 + stop.signum
    finally:
        if cluster is not None:
            cluster.stop()
        if topology is not None:
            topology.stop()
        if cluster is not None:
            print("chatlimit cluster: stopped", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _supervise(cluster: Any) -> int:
    """Wait for a signal; say once if a replica dies, and give up if nginx does."""
    reported: set[str] = set()
    idle = threading.Event()
    while True:
        if not cluster.nginx.alive():
            print(f"chatlimit cluster: nginx exited:\n{cluster.nginx.log_tail()}", file=sys.stderr)
            return 1
        for name, process in cluster.replicas.items():
            if not process.alive() and name not in reported:
                reported.add(name)
                print(f"chatlimit cluster: {name} exited; nginx routes around it",
                      file=sys.stderr, flush=True)
        idle.wait(1.0)


def run_compare(args: argparse.Namespace) -> int:
    from .compare import main

    return main(args.url, requests=args.requests, concurrency=args.concurrency,
                expect=args.expect, limit=args.limit)
