"""The bench's servers: one `chatlimit serve` per variant, one shared redis-server, and nginx
in front of replicas (chatlimit.cluster) for the scaled variants."""

from __future__ import annotations

import contextlib
import os
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...strategies import STRATEGIES
from ..processes import Process, RedisServer, chatlimit_argv, free_port, wait_until

# So high that nothing is ever refused: the bench measures the cost of counting.
BENCH_LIMIT = "1000000/minute"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Variant:
    name: str
    label: str
    storage: str  # "none", "memory" or "redis"
    strategy: str = "fixed-window"
    replicas: int = 0  # 0: the app directly; n: nginx in front of n replicas
    url: str = ""
    redis: RedisServer | None = None
    app_pids: list[int] = field(default_factory=list)  # whose CPU time counts as the app's
    stoppers: list[Callable[[], object]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            "RATE_LIMIT": BENCH_LIMIT,
            "RATE_LIMIT_STRATEGY": self.strategy,
            "RATE_LIMIT_ENABLED": "false" if self.storage == "none" else "true",
            "INSTANCE_NAME": f"bench-{self.name}",
            "LOG_LEVEL": "warning",
            "ACCESS_LOG": "false",
        }


def variants(strategies: list[str], scaled: bool) -> list[Variant]:
    found = [
        Variant("baseline", "limiter off (baseline)", "none"),
        Variant("memory", "memory://, fixed window", "memory"),
    ]
    found += [
        Variant(f"redis-{STRATEGIES[s].tag}", f"redis://, {STRATEGIES[s].label}", "redis", s)
        for s in strategies
    ]
    if scaled:
        found.append(Variant("nginx-1", "nginx + 1 replica + Redis", "redis", replicas=1))
        found.append(Variant("nginx-3", "nginx + 3 replicas + Redis", "redis", replicas=3))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
            return int(answer.status) == 200
    except OSError:
        return False


def _start_single(variant: Variant, workdir: Path, redis: RedisServer | None) -> Process:
    port = free_port()
    env = {**os.environ, **variant.env(), "STORAGE_URI": redis.url if redis else "memory://"}
    env.pop("REDIS_URL", None)
    process = Process(
        variant.name,
        chatlimit_argv("serve", "--port", str(port)),
        workdir / f"{variant.name}.log",
        env=env,
    )
    process.start()
    variant.url = f"http://127.0.0.1:{port}"
    variant.redis = redis
    variant.app_pids = [process.pid]
    variant.stoppers.append(process.stop)
    return process


def _start_cluster(variant: Variant, workdir: Path, redis: RedisServer) -> None:
    from ..stack import LocalStack

    # The bench's own Redis (no AOF), so single and scaled variants write to the same server.
    cluster = LocalStack(
        workdir / variant.name,
        replicas=variant.replicas,
        storage="redis",
        env=variant.env(),
        redis=redis,
        # The limiter's cost is measured, not a model's: replicas answer with the in-process
        # demo model, as the single-process variants do.
        model=False,
    )
    variant.stoppers.append(cluster.stop)
    cluster.start()
    variant.url = cluster.url.rstrip("/")
    variant.redis = redis
    variant.app_pids = [p.pid for p in cluster.replicas.values()]


@contextlib.contextmanager
def running(chosen: list[Variant], workdir: Path) -> Iterator[list[Variant]]:
    """Start every variant's servers (the single apps in parallel); stop them all at the end."""
    redis: RedisServer | None = None
    processes: list[tuple[Variant, Process]] = []
    try:
        if any(v.storage == "redis" for v in chosen):
            redis = RedisServer(workdir, name="bench-redis").start()
        for variant in chosen:
            if not variant.replicas:
                own = redis if variant.storage == "redis" else None
                processes.append((variant, _start_single(variant, workdir, own)))
        for variant in chosen:
            if variant.replicas:
                assert redis is not None
                _start_cluster(variant, workdir, redis)
        for variant, process in processes:
            try:
                wait_until(lambda v=variant: healthy(v.url), timeout=60, what=variant.name)  # type: ignore[misc]
            except TimeoutError:
                raise RuntimeError(f"{variant.name} did not start:\n{process.log_tail()}") from None
        yield chosen
    finally:
        for variant in reversed(chosen):
            for stop in variant.stoppers:
                with contextlib.suppress(Exception):
                    stop()
        if redis is not None:
            redis.stop()
