"""Scaled mode without Docker: redis-server, N `chatlimit serve` replicas and nginx on loopback.

The topology of docker-compose.scaled.yml as local processes, used by `chatlimit cluster`, the
tests and the benchmark, so what users run is what is tested.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import httpx

from . import nginx_conf
from .processes import (
    ModelServer,
    Process,
    RedisServer,
    chatlimit_argv,
    find_binary,
    free_port,
    wait_until,
)
from .prometheus import PrometheusServer

Storage = Literal["redis", "memory"]
START_TIMEOUT = 30.0


class StackError(RuntimeError):
    """A process of the local stack did not come up; the message carries its log tail."""


class LocalStack:
    """Redis (unless memory, or one is given), the demo model (unless LLM_BASE_URL names
    another), replicas app-1..app-N, nginx in front of them."""

    def __init__(
        self,
        workdir: Path,
        *,
        replicas: int = 3,
        storage: Storage = "redis",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        redis: RedisServer | None = None,
        die_with_parent: bool = False,
        prometheus: bool = False,
        prometheus_port: int | None = None,
        scrape_interval: str = "5s",
        model: bool = True,
    ) -> None:
        """die_with_parent: the children get SIGTERM if this process dies without stopping
        them (`chatlimit cluster`, the test fixture); start from the main thread then.
        prometheus: also run a Prometheus scraping each replica's /metrics directly.
        model: run `chatlimit model` behind the replicas (False: each uses the in-process demo
        model, as `chatlimit bench` does to measure the limiter alone)."""
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        if storage not in ("redis", "memory"):
            raise ValueError("storage must be 'redis' or 'memory'")
        if storage == "memory" and redis is not None:
            raise ValueError("a RedisServer was given for storage='memory'")
        self.workdir = workdir
        self.storage = storage
        self.env = dict(env or {})
        self.die_with_parent = die_with_parent
        # Both binaries are checked before anything starts: MissingBinary says how to install.
        self.nginx_binary = find_binary("nginx")
        self._owns_redis = storage == "redis" and redis is None
        if self._owns_redis:
            redis = RedisServer(workdir, appendonly=True)
            redis.process.die_with_parent = die_with_parent
        self.redis: RedisServer | None = redis
        # Like a deployment pointing its replicas at vLLM: one model server behind them all.
        external = self.env.get("LLM_BASE_URL", os.environ.get("LLM_BASE_URL", ""))
        self.model = None if external or not model else ModelServer(
            workdir, die_with_parent=die_with_parent)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.names = [f"app-{i}" for i in range(1, replicas + 1)]
        self.replica_ports = {name: free_port() for name in self.names}
        self.replica_urls = {n: f"http://127.0.0.1:{p}" for n, p in self.replica_ports.items()}
        self.replicas = {name: self._replica_process(name) for name in self.names}
        self.prometheus = PrometheusServer(
            workdir, {n: f"127.0.0.1:{p}" for n, p in self.replica_ports.items()},
            port=prometheus_port, interval=scrape_interval, die_with_parent=die_with_parent,
        ) if prometheus else None
        self.conf_path = workdir / "nginx.conf"
        self.nginx = Process(
            "nginx",
            [self.nginx_binary, "-p", str(workdir), "-c", str(self.conf_path), "-e", "stderr",
             "-g", "daemon off;"],
            workdir / "nginx.log",
            die_with_parent=die_with_parent,
        )

    @property
    def storage_uri(self) -> str:
        return self.redis.url if self.redis is not None else "memory://"

    def _replica_process(self, name: str) -> Process:
        env = {
            # Behind nginx, which never proxies /metrics: scraping reaches the replica itself.
            "METRICS": "on",
            **os.environ,
            **self.env,
            "INSTANCE_NAME": name,
            "REPLICA_NAMES": ",".join(self.names),
            "STORAGE_URI": self.storage_uri,
            **({"LLM_BASE_URL": self.model.api_url} if self.model is not None else {}),
            # nginx runs on loopback: its X-Forwarded-For is the only one believed.
            "TRUSTED_PROXIES": "127.0.0.1",
            "HOST": "127.0.0.1",
            "PORT": str(self.replica_ports[name]),
        }
        return Process(
            name, chatlimit_argv("serve"), self.workdir / f"{name}.log",
            env=env, cwd=self.workdir, die_with_parent=self.die_with_parent,
        )

    def start(self) -> LocalStack:
        if self.nginx.alive():  # already running (e.g. started, then used as a context manager)
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self._owns_redis and self.redis is not None:
                self.redis.start()
            if self.model is not None:
                try:
                    self.model.start(timeout=START_TIMEOUT)
                except (RuntimeError, TimeoutError) as exc:
                    raise StackError(str(exc)) from None
            for process in self.replicas.values():
                process.start()
            for name in self.names:
                self._wait_ready(name)
            self._start_nginx()
            if self.prometheus is not None:
                try:
                    self.prometheus.start()
                except (RuntimeError, TimeoutError) as exc:
                    raise StackError(str(exc)) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nginx(self) -> None:
        upstreams = {name: f"127.0.0.1:{port}" for name, port in self.replica_ports.items()}
        # As root, nginx's workers become `nobody`, who cannot enter a private workdir (pytest's
        # and mkdtemp's are 0700) to buffer request bodies; the rendered copy keeps them as root.
        user = "root" if os.geteuid() == 0 else None
        self.conf_path.write_text(
            nginx_conf.render(nginx_conf.template_text(), upstreams, self.port, self.workdir,
                              user=user,
                              model=f"127.0.0.1:{self.model.port}" if self.model else None),
            encoding="utf-8",
        )
        self.nginx.start()
        self._wait(self.nginx, f"{self.url}/nginx-health", "nginx")

    def _wait_ready(self, name: str) -> None:
        self._wait(self.replicas[name], f"{self.replica_urls[name]}/readyz", name)

    def _wait(self, process: Process, url: str, what: str) -> None:
        def ready() -> bool:
            if not process.alive():
                raise StackError(f"{what} exited during start-up:\n{process.log_tail()}")
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout=START_TIMEOUT, interval=0.05, what=what)
        except TimeoutError as exc:
            raise StackError(f"{exc}:\n{process.log_tail()}") from None

    def kill_replica(self, name: str) -> None:
        """SIGKILL one replica, as a crash would: no graceful shutdown, in-flight requests lost."""
        process = self.replicas[name]
        process.signal(signal.SIGKILL)
        _reap(process)

    def start_replica(self, name: str) -> None:
        """Start a killed or stopped replica again on its own port and wait until it is ready."""
        if self.replicas[name].alive():
            return
        self.replicas[name] = process = self._replica_process(name)
        process.start()
        self._wait_ready(name)

    def stop(self) -> None:
        """Stop everything this cluster started, front to back; safe to call twice."""
        if self.prometheus is not None:
            _reap(self.prometheus.process)
        _reap(self.nginx)
        for process in self.replicas.values():
            process.signal(signal.SIGTERM)  # all at once, then wait for each
        for process in self.replicas.values():
            _reap(process)
        if self.model is not None:
            self.model.process.signal(signal.SIGCONT)  # a test may have frozen it
            _reap(self.model.process)
        if self._owns_redis and self.redis is not None:
            _reap(self.redis.process)

    def pids(self) -> list[int]:
        """Process ids of the running children (not nginx's workers)."""
        processes = [self.nginx, *self.replicas.values()]
        if self.prometheus is not None:
            processes.append(self.prometheus.process)
        if self._owns_redis and self.redis is not None:
            processes.append(self.redis.process)
        if self.model is not None:
            processes.append(self.model.process)
        return [p.pid for p in processes if p.alive()]

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reap(process: Process) -> None:
    """Stop a process and anything left in its process group (nginx's workers, say)."""
    if process.popen is None:
        return
    process.stop()
    # Each child leads its own session (start_new_session), so its group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
