"""A real Prometheus (Debian's `prometheus`) scraping the local stack's replicas directly.

prometheus/prometheus.yml is the compose file's config (targets app-N:7860 on the compose
network); here the same job is written for loopback ports, each target labelled with its
replica name. JSON is YAML, so the config needs no YAML library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from .processes import Process, find_binary, free_port, wait_until

JOB = "chatlimit"  # the job name, as in prometheus/prometheus.yml


def scrape_config(targets: Mapping[str, str], interval: str = "5s") -> dict[str, Any]:
    """{replica name: "host:port"} -> a Prometheus config scraping each replica's /metrics."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "scrape_timeout": interval,
            "static_configs": [
                {"targets": [address], "labels": {"replica": name}}
                for name, address in targets.items()
            ],
        }],
    }


class PrometheusServer:
    """/usr/bin/prometheus on a loopback port, its data and config under workdir."""

    def __init__(
        self, workdir: Path, targets: Mapping[str, str], *, port: int | None = None,
        interval: str = "5s", die_with_parent: bool = False,
    ) -> None:
        self.binary = find_binary("prometheus")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.config = scrape_config(targets, interval)
        self.process = Process(
            "prometheus",
            [self.binary, f"--config.file={self.config_path}",
             f"--storage.tsdb.path={workdir / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d"],
            workdir / "prometheus.log", cwd=workdir, die_with_parent=die_with_parent,
        )

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        self.config_path.write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        self.process.start()

        def ready() -> bool:
            if not self.process.alive():
                raise RuntimeError(f"prometheus exited:\n{self.process.log_tail()}")
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=timeout, interval=0.1, what="prometheus")
        return self

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query over the HTTP API: the result vector."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        answer.raise_for_status()
        body = answer.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """A query's single value (a sum, say), or None while it has no sample."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.stop()
