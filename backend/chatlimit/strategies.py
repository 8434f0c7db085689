"""The one strategy registry: every rate-limiting strategy chatlimit runs, registered once.

Each strategy has the name slowapi and `limits` use, a short tag that goes into storage keys
(switching strategies on a shared Redis then never meets a key of the wrong type), the Lua
script that runs it in Redis (storage/lua/) and a label for people. The in-process step for
`memory://` is MemoryCounter's method `_step_<tag>`. A leaf module: settings, storage, the
limiter and the tools all read it.
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


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("fixed-window", "fw", "fixed_window.lua", "fixed window"),
        Strategy("moving-window", "mw", "moving_window.lua", "moving window"),
        Strategy("sliding-window-counter", "swc", "sliding_window_counter.lua",
                 "sliding window counter"),
    )
}
NAMES: tuple[str, ...] = tuple(STRATEGIES)


def strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}: use one of {', '.join(NAMES)}") from None
