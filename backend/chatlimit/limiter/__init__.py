"""The limiter: decides whether a request may pass, never writes HTTP.

`Limiter`, a drop-in for slowapi's that counts every limit of a request in one awaited call
(core.py; `ChatLimiter` is its former name), slowapi's limit options resolved per request
(rules.py) and planned once (plans.py), the hooks slowapi's middlewares call
(slowapi_surface.py), stock slowapi beside it (stock.py), API-key tiers (tiers.py), the token
budget (budget.py), the fail-mode breaker (breaker.py), the rate-limit headers (headers.py),
who is asking (identity.py) and the storage keys (keys.py).
"""

from __future__ import annotations

from .breaker import Breaker
from .core import ChatLimiter, Decision, Limiter, decision_of, route_name

__all__ = ["Breaker", "ChatLimiter", "Decision", "Limiter", "decision_of", "route_name"]
