"""The Observer: what the limiter and its breaker tell the outside, one call per event.

create_app builds one and injects it into ChatLimiter and Breaker, so the hot path makes one
call per decision (`decided`) and one per storage call (`storage_call`), and everything it
feeds (Prometheus metrics when METRICS=on, the last minute for /api/stats, the throttled
refusal log) stays in this room.
"""

from __future__ import annotations

from collections.abc import Sequence

from limits import RateLimitItem

from ..storage import Verdict
from .logs import RefusalLog
from .metrics import Metrics
from .recent import Recent

NEAR_LIMIT_RATIO = 0.8  # envoy's NEAR_LIMIT_RATIO default


def policy_label(item: RateLimitItem) -> str:
    """The policy's label value: the limit as slowapi spells it, "3 per 1 minute"."""
    return str(item)


class Observer:
    def __init__(self, metrics: Metrics | None = None, *, shadow: bool = False) -> None:
        self.metrics = metrics
        self.shadow = shadow
        self.recent = Recent()
        self.refusals = RefusalLog(shadow=shadow)
        self._labels: dict[tuple[RateLimitItem, bool | str], tuple[str, str]] = {}

    def _label(self, item: RateLimitItem, ceiling: bool | str) -> tuple[str, str]:
        """ceiling: True for a per-address ceiling, False for the caller's own request limit,
        or the kind itself ("tokens")."""
        labels = self._labels.get((item, ceiling))
        if labels is None:
            kind = ceiling if isinstance(ceiling, str) else "address" if ceiling else "requests"
            labels = self._labels[(item, ceiling)] = (policy_label(item), kind)
        return labels

    def declare(self, items: Sequence[RateLimitItem], ceiling: Sequence[bool | str]) -> None:
        """The policies in force, so their series exist (at 0) before the first request."""
        if self.metrics is not None:
            for item, c in zip(items, ceiling, strict=True):
                self.metrics.declare_policy(*self._label(item, c))

    def decided(
        self, items: Sequence[RateLimitItem], ceiling: Sequence[bool | str], verdict: Verdict,
        identity: str = "", *, streams: int | None = None,
    ) -> None:
        """One counted request (never a peek). On a refusal only the refusing policy counts
        it: the script charges nothing then, so the other policies did not count it either.
        `identity` is the refusing policy's hashed identity, for the log line; `streams` the
        stream-slot limit (MAX_STREAMS), whose refusal is index len(items)."""
        failed = verdict.failed
        if failed is not None:
            labels = (f"{streams} replies at once", "streams") if failed >= len(items) \
                else self._label(items[failed], ceiling[failed])
        if failed is None:
            self.recent.record(0)
        else:
            self.recent.record(2 if self.shadow else 1)
            self.refusals.refused(*labels, identity)
        metrics = self.metrics
        if metrics is None:
            return
        if failed is not None:
            metrics.decision(*labels, "shadow" if self.shadow else "over_limit").inc()
            return
        for item, c, quota in zip(items, ceiling, verdict.quotas, strict=False):
            policy, kind = self._label(item, c)
            metrics.decision(policy, kind, "within_limit").inc()
            if quota.limit - quota.remaining > NEAR_LIMIT_RATIO * quota.limit:
                metrics.near(policy, kind).inc()

    def storage_call(self, outcome: str, seconds: float | None = None) -> None:
        """ok / error / timeout with the call's duration, or fallback (no storage call)."""
        if self.metrics is not None:
            self.metrics.storage(outcome).inc()
            if seconds is not None:
                self.metrics.storage_latency.observe(seconds)

    def degraded(self, on: bool) -> None:
        if self.metrics is not None:
            self.metrics.degraded.set(1 if on else 0)

    # Fed by the token-budget work.
    def tokens(self, *, reserved: int = 0, charged: int = 0, refunded: int = 0) -> None:
        if self.metrics is not None:
            self.metrics.tokens_reserved.inc(reserved)
            self.metrics.tokens_charged.inc(charged)
            self.metrics.tokens_refunded.inc(refunded)

    def stream(self, delta: int) -> None:
        """+1 when a streamed reply starts, -1 when it ends."""
        if self.metrics is not None:
            self.metrics.streams_in_flight.inc(delta)
