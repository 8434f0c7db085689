"""Watching the limiter from outside: Prometheus metrics, the last minute's figures for the
page, and logs (text or JSON). Fed through one Observer that create_app injects."""

from __future__ import annotations

from .metrics import Metrics
from .observer import Observer

__all__ = ["Metrics", "Observer"]
