"""The Prometheus metrics of one app: a registry of its own (never the process-global default,
so two apps in one test process never share or collide), served as GET /metrics.

Names follow the sources in docs/metrics.md: envoyproxy/ratelimit's within_limit / over_limit
/ near_limit / shadow per rule, OpenTelemetry's one decision counter with a bounded result
label, and prometheus-fastapi-instrumentator's http_requests_total. Every label value comes
from the configuration or the route table (a limit string, a kind, a route template, a status):
never a user, key, address or message, so the number of series is fixed by the config.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

PREFIX = "chatlimit"
# The results of one decision, per policy. Exclusive: their sum is every request a policy
# counted. near_limit is a separate counter, a subset of within_limit (as in envoy).
RESULTS = ("within_limit", "over_limit", "shadow")
# What a policy limits. requests and address are counted today; tokens, streams and tier
# belong to the token-budget work and are declared here so the names exist once.
KINDS = ("requests", "address", "tokens", "streams", "tier")
STORAGE_OUTCOMES = ("ok", "error", "timeout", "fallback")
# Storage round trips are ~0.1-1 ms on loopback and capped by REDIS_SOCKET_TIMEOUT (0.25 s).
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every metric chatlimit exports, registered on one CollectorRegistry."""

    def __init__(self, *, instance: str, storage: str, strategy: str, mode: str) -> None:
        # No *_created series: a timestamp per series doubles the scrape for nothing PromQL
        # needs (the library's own switch, process-wide, and the same answer for every app).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        Gauge(f"{PREFIX}_info", "This replica's configuration (value 1).",
              ["replica", "storage", "strategy", "mode"], registry=r,
              ).labels(instance, storage, strategy, mode).set(1)
        self.decisions = Counter(
            f"{PREFIX}_rate_limit_decisions", "Rate-limit decisions per policy and result: "
            "within_limit, over_limit (refused) or shadow (would refuse, RATE_LIMIT_MODE=shadow).",
            ["policy", "kind", "result"], registry=r)
        self.near_limit = Counter(
            f"{PREFIX}_rate_limit_near_limit", "Allowed requests that used more than 80% of a "
            "policy's limit (a subset of within_limit).", ["policy", "kind"], registry=r)
        self.storage_calls = Counter(
            f"{PREFIX}_storage_calls", "Counting steps by outcome: ok, error or timeout (the "
            "shared storage was asked), fallback (counted in this replica's memory instead).",
            ["outcome"], registry=r)
        self.storage_latency = Histogram(
            f"{PREFIX}_storage_latency_seconds", "Time of one call to the shared storage.",
            buckets=STORAGE_BUCKETS, registry=r)
        self.degraded = Gauge(
            f"{PREFIX}_storage_degraded", "1 while the shared storage is unreachable (fail mode "
            "in force), else 0.", registry=r)
        self.http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests by route template, method and status "
            "(route \"none\" when no route matched).", ["route", "method", "status"], registry=r)
        self.http_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds", "HTTP request duration by route template.",
            ["route", "method"], buckets=HTTP_BUCKETS, registry=r)
        # Fed by the token-budget work (reserve before the model call, charge the usage after,
        # refund the rest); declared now so the names and help exist in one place.
        self.tokens_reserved = Counter(f"{PREFIX}_tokens_reserved", "Tokens reserved before a "
                                       "model call.", registry=r)
        self.tokens_charged = Counter(f"{PREFIX}_tokens_charged", "Tokens charged from the "
                                      "model's usage.", registry=r)
        self.tokens_refunded = Counter(f"{PREFIX}_tokens_refunded", "Reserved tokens given "
                                       "back after the call.", registry=r)
        self.streams_in_flight = Gauge(f"{PREFIX}_streams_in_flight", "Streamed replies in "
                                       "progress.", registry=r)
        for outcome in STORAGE_OUTCOMES:  # every outcome reads 0 before it first happens
            self.storage_calls.labels(outcome)
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}

    def declare_policy(self, policy: str, kind: str) -> None:
        """Make a policy's series read 0 from the start, so rate() and sums see it at once."""
        for result in RESULTS:
            self.decision(policy, kind, result)
        self.near(policy, kind)

    # labels() costs a lock and a tuple per call; a dict of children is the hot path's lookup.
    def decision(self, policy: str, kind: str, result: str) -> Counter:
        key = ("d", policy, kind, result)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.decisions.labels(policy, kind, result)
        return child  # type: ignore[return-value]

    def near(self, policy: str, kind: str) -> Counter:
        key = ("n", policy, kind)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.near_limit.labels(policy, kind)
        return child  # type: ignore[return-value]

    def storage(self, outcome: str) -> Counter:
        key = ("s", outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.storage_calls.labels(outcome)
        return child  # type: ignore[return-value]

    def http(self, route: str, method: str, status: int) -> tuple[Counter, Histogram]:
        key = ("h", route, method, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.http_requests.labels(route, method, str(status))
        duration_key = ("hd", route, method)
        duration = self._children.get(duration_key)
        if duration is None:
            duration = self._children[duration_key] = self.http_duration.labels(route, method)
        return child, duration  # type: ignore[return-value]

    def render(self) -> bytes:
        return generate_latest(self.registry)
