"""`chatlimit cluster`: the local stack (stack.py) in the foreground, stopped by Ctrl-C."""

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

from ..settings import Settings, load_settings
from . import TOOLS


def add_parser(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster",
        help=TOOLS["cluster"],
        description="Redis, N `chatlimit serve` replicas and nginx on loopback, as "
        "docker-compose.scaled.yml runs them. RATE_LIMIT, RATE_LIMIT_STRATEGY and the other "
        "variables pass through to the replicas. Ctrl-C or SIGTERM stops everything.",
    )
    cluster.add_argument("--replicas", type=positive, default=3, help="replicas (default 3)")
    cluster.add_argument("--storage", choices=["redis", "memory"],
                         help="shared redis-server (default), or memory: each replica alone "
                         "(STORAGE_URI=memory:// means the same)")
    cluster.add_argument("--port", type=int, default=8080, help="nginx's port (default 8080)")
    cluster.add_argument("--redis", choices=["single", "sentinel", "cluster"], default="single",
                         help="the shared Redis: one redis-server (default), a primary with a "
                         "replica and three sentinels, or a three-primary Redis Cluster")
    cluster.add_argument("--prometheus", action="store_true",
                         help="also run Debian's prometheus, scraping each replica's /metrics "
                         "directly (nginx never serves /metrics)")
    cluster.add_argument("--prometheus-port", type=int, default=9090,
                         help="Prometheus's port with --prometheus (default 9090)")
    cluster.set_defaults(func=run_cluster)


def cluster_storage(flag: str | None, settings: Settings) -> str:
    """--storage, or STORAGE_URI=memory:// read as --storage memory; anything else that
    STORAGE_URI names would be silently replaced by the cluster's own Redis, so it is refused.
    Returns "redis", "memory" or the one-line refusal. (load_settings also refuses a bad
    RATE_LIMIT here, in one line: the replicas read the same environment.)"""
    if "storage_uri" not in settings.model_fields_set:
        return flag or "redis"
    wanted = settings.storage_kind
    if wanted == "memory" and flag in (None, "memory"):
        return "memory"
    if flag is None:
        return ("chatlimit cluster: STORAGE_URI (or REDIS_URL) would be ignored (the cluster "
                "starts its own redis-server); unset it, or use STORAGE_URI=memory:// or "
                "--storage memory")
    return (f"chatlimit cluster: STORAGE_URI={settings.storage_uri_masked} contradicts "
            f"--storage {flag}; unset STORAGE_URI or drop --storage")


def positive(text: str) -> int:
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
    from .processes import MissingBinary, claim, port_holder
    from .redis_topologies import start_redis
    from .stack import LocalStack, StackError

    holder = port_holder(args.port)
    if holder is not None:
        print(f"chatlimit cluster: port {args.port} is taken by {holder}; "
              "choose another with --port N", file=sys.stderr)
        return 1
    if args.prometheus and (holder := port_holder(args.prometheus_port)) is not None:
        print(f"chatlimit cluster: port {args.prometheus_port} is taken by {holder}; "
              "choose another with --prometheus-port N", file=sys.stderr)
        return 1
    claim(args.port, *([args.prometheus_port] if args.prometheus else []))
    storage = cluster_storage(args.storage, load_settings())
    if storage.startswith("chatlimit cluster:"):
        print(storage, file=sys.stderr)
        return 2
    args.storage = storage
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="chatlimit-cluster-"))
    cluster = topology = None
    try:
        if args.storage == "memory" and args.redis != "single":
            print("chatlimit cluster: --redis needs --storage redis", file=sys.stderr)
            return 2
        topology = start_redis(args.redis, workdir)  # None: the cluster starts one redis
        cluster = LocalStack(workdir, replicas=args.replicas, storage=args.storage, port=args.port,
                          redis=topology, die_with_parent=True,  # type: ignore[arg-type]
                          prometheus=args.prometheus, prometheus_port=args.prometheus_port)
        print(f"chatlimit cluster: starting {args.replicas} replicas ({args.storage}) "
              f"behind nginx at {cluster.url}; logs in {workdir}", flush=True)
        cluster.start()
        storage = cluster.redis.url if cluster.redis else "memory:// (each replica counts alone)"
        print(f"ready: {cluster.url}", flush=True)
        print(f"replicas: {', '.join(cluster.names)} (each at {cluster.url}/replica/<name>/)",
              flush=True)
        print(f"storage: {storage}", flush=True)
        if cluster.model is not None:
            print(f"model: chatlimit model at {cluster.model.api_url} "
                  f"(its ledger at {cluster.url}/model/v1/ledger)", flush=True)
        print("metrics: " + ", ".join(f"{url}/metrics" for url in cluster.replica_urls.values())
              + " (each replica directly; not through nginx)", flush=True)
        if cluster.prometheus is not None:
            print(f"prometheus: {cluster.prometheus.url} (scraping every "
                  f"{cluster.prometheus.config['global']['scrape_interval']})", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        return _supervise(cluster)
    except MissingBinary as exc:
        print(f"chatlimit cluster: {exc}", file=sys.stderr)
        return 1
    except StackError as exc:
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
