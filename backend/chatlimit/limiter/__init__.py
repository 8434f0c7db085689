"""The limiter: decides whether a request may pass, never writes HTTP.

The slowapi integration and per-route plans (core.py), the fail-mode breaker (breaker.py), the
rate-limit headers (headers.py), who is asking (identity.py) and the storage keys (keys.py).
"""

from __future__ import annotations

from .breaker import Breaker
from .core import ChatLimiter, Decision, decision_of, route_name

__all__ = ["Breaker", "ChatLimiter", "Decision", "decision_of", "route_name"]
