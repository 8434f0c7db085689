"""The sliding window counter on memory://, on a controlled clock (the Lua script agrees with
it step for step: tests/integration/test_strategy_parity.py)."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse

from chatlimit.storage import MemoryCounter, Verdict

THREE = parse("3/10 second")
KEY = ["chatlimit:{a}:u:swc:chat:3/10second"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0  # a multiple of the window, so limits' windows line up with ours

    def __call__(self) -> float:
        return self.now


def hit(counter: MemoryCounter) -> Verdict:
    return asyncio.run(counter.hit(KEY, [THREE], [1]))


def peek(counter: MemoryCounter) -> Verdict:
    return asyncio.run(counter.peek(KEY, [THREE]))


def test_reset_after_is_when_the_weighted_count_next_drops_not_the_window_end() -> None:
    clock = Clock()
    counter = MemoryCounter("sliding-window-counter", clock=clock)
    assert [hit(counter).allowed for _ in range(3)] == [True, True, True]
    clock.now += 12  # next window, 2 s in: 3 x 0.8 counts as 2, so one is left
    answer = hit(counter)
    assert answer.allowed and answer.quotas[0].remaining == 0
    # The window ends in 8 s, but the previous window's share drops to 1 after 8 - 2 x 10/3.
    reset = answer.quotas[0].reset_after
    assert reset == pytest.approx(8 - 20 / 3)

    clock.now += reset - 0.01
    assert peek(counter).quotas[0].remaining == 0
    clock.now += 0.02
    assert peek(counter).quotas[0].remaining == 1  # the quota grew when reset_after said


def test_the_window_moves_on_every_call_so_a_window_of_peeks_keeps_the_phase() -> None:
    # As limits does: windows of 10 s from the first hit at 1000, whatever was allowed.
    clock = Clock()
    counter = MemoryCounter("sliding-window-counter", clock=clock)
    assert [hit(counter).allowed for _ in range(3)] == [True, True, True]  # window 1000-1010
    clock.now = 1012
    assert peek(counter).quotas[0].remaining == 1  # only looked: window 1010-1020 is empty
    clock.now = 1021  # window 1020-1030, the one before it empty
    assert [hit(counter).allowed for _ in range(4)] == [True, True, True, False]
    # Window 1030-1040: the previous one's 3 count 3 x 0.95 = 2, so one more fits. Had the
    # window at 1021 started anew (a new phase), 1030.5 would still be inside it: refused.
    clock.now = 1030.5
    assert hit(counter).allowed
    assert not hit(counter).allowed
