"""The limiter's own work per request, counted rather than timed: the Python bytecodes that
chatlimit's limiter, storage and observer code executes for one request, end to end through
the app (identity, admission, headers, and for a streamed reply its settlement).

A count does not depend on how busy the machine is, so a change that adds work to the hot path
fails here at once, where `chatlimit bench` (issue 17's targets) could only show it as a few
percent inside its noise. The bounds are the counts measured when they were set (Python 3.11)
plus about 10%; raise one only for work the request needs, and say why in the commit. And a
new user's request must cost the same after thousands of users as after ten: work done in
Python that grows with the users held would show here (work in C, a dict's own, would not).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import Counter
from types import FrameType
from typing import Any

import httpx
import pytest

from chatlimit.app import create_app
from tests.support import make_settings

COUNTED = ("chatlimit.limiter", "chatlimit.storage", "chatlimit.observe")
MEASURED = 10  # requests counted, after three that warm every cache up
# The Redis client's timeout check runs a socket timeout after each write, off the request's
# path: whether it lands inside the count depends on the clock, not on the request.
OFF_THE_PATH = {"_Protocol.expire"}
# Past every cache of identities and keys (1,024 and 4,096 entries), so they have turned over.
MANY_USERS = 5_000
_RUNS = itertools.count()

# Per storage; measured when set: streamed with budgets 2,756 (memory://) and 2,924 (Redis);
# the request limit alone (a JSON reply) 1,288 and 1,509; the limiter switched off 240.
STREAMED_WITH_BUDGETS = {"memory": 3_050, "redis": 3_200}
REQUEST_LIMIT_ONLY = {"memory": 1_420, "redis": 1_660}
SWITCHED_OFF = 265


def work_per_request(
    *, stream: bool, new_users: bool = False, known: int = 0, **overrides: Any,
) -> tuple[float, Counter[str]]:
    """Bytecodes executed in COUNTED per request (and per function), for MEASURED requests:
    of one user (the bench's case, a client that keeps asking), or with `new_users` each from a
    user never seen before, after `known` other users have asked once."""
    counts: Counter[str] = Counter()

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        if not str(frame.f_globals.get("__name__", "")).startswith(COUNTED) or \
                frame.f_code.co_qualname in OFF_THE_PATH:
            return None
        if event == "call":
            frame.f_trace_opcodes = True
        elif event == "opcode":
            counts[f"{frame.f_globals['__name__']}.{frame.f_code.co_name}"] += 1
        return trace

    settings = make_settings(rate_limit="1000/minute", model_token_delay_ms=0,
                             llm_max_tokens=8, **overrides)
    app = create_app(settings)
    headers = {"Accept": "text/event-stream"} if stream else {}
    previous = sys.gettrace()  # a coverage tool or debugger gets its tracer back
    # Users of this call only: the identity caches are the process's, and a user another call
    # made would be found there.
    run_id = f"run-{next(_RUNS)}"

    async def run() -> None:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://chatlimit") as client:
            for user in range(known):
                reply = await client.post("/chat", json={"message": "hello"},
                                          headers={"User-Agent": f"{run_id}-known-{user}"})
                assert reply.status_code == 200, reply.text
            for n in range(3 + MEASURED):
                if n == 3:
                    sys.settrace(trace)
                agent = {"User-Agent": f"{run_id}-new-{n}"} if new_users else {}
                try:
                    reply = await client.post("/chat", json={"message": "hello"},
                                              headers={**headers, **agent})
                finally:
                    if n == 2 + MEASURED:
                        sys.settrace(previous)
                assert reply.status_code == 200, reply.text
                if stream:
                    assert "event: done" in reply.text, reply.text

    try:
        asyncio.run(run())
    finally:
        sys.settrace(previous)
    return sum(counts.values()) / MEASURED, counts


def _kind(storage_uri: str) -> str:
    return "memory" if storage_uri.startswith("memory") else "redis"


def _top(counts: Counter[str]) -> str:
    return ", ".join(f"{name} {n / MEASURED:.0f}" for name, n in counts.most_common(8))


def test_a_streamed_reply_with_token_budget_and_stream_slot_stays_within_its_bound(
        storage_uri: str) -> None:
    # Admission (request limit, token reservation, stream lease in one storage call), the
    # headers, the meta event's quota, and the settlement when the reply ends.
    work, counts = work_per_request(stream=True, storage_uri=storage_uri,
                                    token_limit="1000000/minute", max_streams=10)
    bound = STREAMED_WITH_BUDGETS[_kind(storage_uri)]
    assert work <= bound, f"{work:.0f} bytecodes per reply (bound {bound}): {_top(counts)}"
    # Counted: the settlement is part of it (a second storage call, per reply).
    assert any(name.endswith(".settle") for name in counts)


def test_a_request_limit_alone_stays_within_its_bound(storage_uri: str) -> None:
    work, counts = work_per_request(stream=False, storage_uri=storage_uri,
                                    token_limit="off", max_streams="off")
    bound = REQUEST_LIMIT_ONLY[_kind(storage_uri)]
    assert work <= bound, f"{work:.0f} bytecodes per request (bound {bound}): {_top(counts)}"
    assert not any(name.endswith(".settle") for name in counts)


def test_the_limiter_switched_off_does_almost_no_work() -> None:
    # The bench's baseline (RATE_LIMIT_ENABLED=false): what is left is the route asking who
    # the user is (the model's `user` field), working out the reservation it would ask, and
    # finding no decision.
    work, counts = work_per_request(stream=True, rate_limit_enabled=False)
    assert work <= SWITCHED_OFF, f"{work:.0f} bytecodes per request (bound {SWITCHED_OFF}): " \
        f"{_top(counts)}"


def test_a_new_user_costs_the_same_work_after_many_users_as_after_a_few(
        storage_uri: str, request: pytest.FixtureRequest) -> None:
    # The users curve's claim, counted: what grows with the number of users is memory, not
    # work. A never-seen user's request costs its identity's digests and its keys (a fixed
    # amount above a returning user's), whether 10 or MANY_USERS users came before it.
    returning, _ = work_per_request(stream=False, storage_uri=storage_uri,
                                    token_limit="off", max_streams="off")
    few, _ = work_per_request(stream=False, new_users=True, known=10,
                              storage_uri=storage_uri, token_limit="off", max_streams="off")
    if _kind(storage_uri) == "redis":  # the address ceiling starts over
        request.getfixturevalue("redis_server").command("FLUSHALL")
    many, counts = work_per_request(stream=False, new_users=True, known=MANY_USERS,
                                    storage_uri=storage_uri, token_limit="off",
                                    max_streams="off")
    assert few > returning  # new users are counted as new: their caches missed
    assert few <= returning * 1.15, f"a new user: {few:.0f} bytecodes, a returning one " \
        f"{returning:.0f}"
    assert many <= few * 1.02, f"after {MANY_USERS} users {many:.0f} bytecodes, after 10 " \
        f"{few:.0f}: {_top(counts)}"
