"""The one strategy registry: every rate-limiting strategy chatlimit runs, registered once.

Each strategy has the name slowapi and `limits` use, a short tag that goes into storage keys
(switching strategies on a shared Redis then never meets a key of the wrong type), the Lua
file with its step in Redis (storage/lua/), a label for people, and whether it keeps weighted
entries (a cost counted as one number that a settlement can correct: what token budgets
need). The in-process step for `memory://` is MemoryCounter's method `_step_<tag>` (and
`_settle_<tag>`). A leaf module: settings, storage, the limiter and the tools all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StrategyName = Literal["fixed-window", "moving-window", "sliding-window-counter"]


@dataclass(frozen=True, slots=True)
class Strategy:
    name: StrategyName
    tag: str
    lua: str
    label: str
    weighted: bool


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("fixed-window", "fw", "fixed_window.lua", "fixed window", weighted=True),
        # One list entry per unit of cost: a 300-token reservation would be 300 entries.
        Strategy("moving-window", "mw", "moving_window.lua", "moving window", weighted=False),
        Strategy("sliding-window-counter", "swc", "sliding_window_counter.lua",
                 "sliding window counter", weighted=True),
    )
}
NAMES: tuple[str, ...] = tuple(STRATEGIES)
WEIGHTED: tuple[str, ...] = tuple(s.name for s in STRATEGIES.values() if s.weighted)


def strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}: use one of {', '.join(NAMES)}") from None
