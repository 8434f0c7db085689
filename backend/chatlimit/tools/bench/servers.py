"""The bench's servers: one `chatlimit serve` per variant, one shared redis-server, and nginx
in front of replicas (chatlimit.cluster) for the scaled variants."""

from __future__ import annotations

import contextlib
import os
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...strategies import STRATEGIES
from ..processes import (
    ModelServer,
    Process,
    RedisServer,
    chatlimit_argv,
    free_port,
    wait_until,
)

# So high that nothing is ever refused: the bench measures the cost of counting.
BENCH_LIMIT = "1000000/minute"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Variant:
    name: str
    label: str
    storage: str  # "none", "memory" or "redis"
    strategy: str = "fixed-window"
    engine: str = "chatlimit"  # RATE_LIMIT_ENGINE; "bare": the ceiling app (bare_app.py)
    replicas: int = 0  # 0: the app directly; n: nginx in front of n replicas
    url: str = ""
    redis: RedisServer | None = None
    app_pids: list[int] = field(default_factory=list)  # whose CPU time counts as the app's
    stoppers: list[Callable[[], object]] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)  # more environment (users curve)
    # True: the model is `chatlimit model`, its own process, reached through the openai SDK
    # (LLM_BASE_URL), as in the scaled deployment; False: the demo model inside the app.
    upstream: bool = False

    def env(self) -> dict[str, str]:
        engine = {"RATE_LIMIT_ENGINE": self.engine} if self.engine == "slowapi" else {}
        return {
            **engine,
            "RATE_LIMIT": BENCH_LIMIT,
            "RATE_LIMIT_STRATEGY": self.strategy,
            "RATE_LIMIT_ENABLED": "false" if self.storage == "none" else "true",
            # The benchmark measures the request limiter (one round trip a request); a token
            # budget adds its settlement call and would refuse wrk's flood of one user.
            "TOKEN_LIMIT": "off",
            "MAX_STREAMS": "off",
            "INSTANCE_NAME": f"bench-{self.name}",
            "LOG_LEVEL": "warning",
            "ACCESS_LOG": "false",
            **self.extra,
        }


def slowapi_engine_available() -> bool:
    """Whether this install has RATE_LIMIT_ENGINE (stock slowapi beside chatlimit's engine)."""
    from ...settings import Settings

    return "rate_limit_engine" in Settings.model_fields


def variants(strategies: list[str], scaled: bool, engines: tuple[str, ...] = ("chatlimit",)
             ) -> list[Variant]:
    """Every variant of the main table: the baseline, the bare ceiling, then per engine
    memory://, Redis per strategy and (scaled) nginx in front of 1 and 3 replicas."""
    found = [
        Variant("baseline", "limiter off (baseline)", "none"),
        Variant("bare", "bare FastAPI app, no limiter (ceiling)", "none", engine="bare"),
    ]
    for engine in engines:
        # chatlimit's names stay as they were, so earlier reports compare row by row.
        prefix, who = ("", "") if engine == "chatlimit" else (f"{engine}-", f"stock {engine}, ")
        found.append(Variant(f"{prefix}memory", f"{who}memory://, fixed window", "memory",
                             engine=engine))
        # Stock slowapi on fixed window only: its moving window, at the bench's limit of a
        # million, binary-searches a list of up to a million entries for its headers on every
        # request (peers-measured.md) and ran at ~10 req/s here, timing out into 500s.
        found += [
            Variant(f"{prefix}redis-{STRATEGIES[s].tag}", f"{who}redis://, {STRATEGIES[s].label}",
                    "redis", s, engine=engine)
            for s in strategies if engine == "chatlimit" or s == "fixed-window"
        ]
        if scaled:
            found.append(Variant(f"{prefix}nginx-1", f"{who}nginx + 1 replica + Redis", "redis",
                                 replicas=1, engine=engine))
            found.append(Variant(f"{prefix}nginx-3", f"{who}nginx + 3 replicas + Redis", "redis",
                                 replicas=3, engine=engine))
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


def start_single(variant: Variant, workdir: Path, redis: RedisServer | None) -> Process:
    port = free_port()
    env = {**os.environ, **variant.env(), "STORAGE_URI": redis.url if redis else "memory://"}
    env.pop("REDIS_URL", None)
    argv = (
        [sys.executable, "-m", "chatlimit.tools.bench.bare_app", "--port", str(port)]
        if variant.engine == "bare"
        else chatlimit_argv("serve", "--port", str(port))
    )
    process = Process(
        variant.name,
        argv,
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
    model: ModelServer | None = None
    processes: list[tuple[Variant, Process]] = []
    try:
        if any(v.storage == "redis" for v in chosen):
            redis = RedisServer(workdir, name="bench-redis").start()
        if any(v.upstream for v in chosen):  # one model for them all: they run in turn
            model = ModelServer(workdir, "bench-model", log_level="warning",
                                access_log="false").start()
            for variant in chosen:
                if variant.upstream:
                    variant.extra = {**variant.extra, "LLM_BASE_URL": model.api_url}
        for variant in chosen:
            if not variant.replicas:
                own = redis if variant.storage == "redis" else None
                processes.append((variant, start_single(variant, workdir, own)))
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
        if model is not None:
            model.stop()
