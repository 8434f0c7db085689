"""memory:// stays bounded: a flood of distinct clients cannot grow the process without limit
(MEMORY_MAX_KEYS, oldest first), and what a window used is given back when it ends."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from http import HTTPStatus

import pytest
from limits import parse

from chatlimit.limiter.keys import key_for, key_suffix
from chatlimit.storage import MemoryCounter
from chatlimit.tools.processes import free_port

from ..support import STRATEGIES, ClientFactory
from ..traffic import chat

THREE = parse("3/minute")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hit(counter: MemoryCounter, strategy: str, client: int) -> bool:
    key = key_for(f"client-{client}", key_suffix(strategy, "chat", THREE))
    return counter.check([key], [THREE], [1], peek=False).allowed


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_memory_counter_keeps_at_most_max_keys_dropping_the_oldest(strategy: str) -> None:
    counter = MemoryCounter(strategy, clock=Clock(), max_keys=1000)
    for client in range(5000):
        assert hit(counter, strategy, client)
    assert len(counter) <= 1000
    assert counter.evicted >= 4000
    # The newest clients are still counted exactly: two more, then refused.
    assert [hit(counter, strategy, 4999) for _ in range(3)] == [True, True, False]
    # The oldest were dropped: client 0 starts a fresh window.
    assert [hit(counter, strategy, 0) for _ in range(4)] == [True, True, True, False]


def test_a_new_fixed_window_moves_its_key_to_the_back_of_the_eviction_queue() -> None:
    clock = Clock()
    counter = MemoryCounter("fixed-window", clock=clock, max_keys=1000)
    hit(counter, "fixed-window", 0)
    clock.now += 61  # client 0's window ended; its next hit opens a new one
    for client in range(1, 1000):
        hit(counter, "fixed-window", client)
    hit(counter, "fixed-window", 0)
    for client in range(1000, 1050):  # over the cap: the oldest tenth goes
        hit(counter, "fixed-window", client)
    assert [hit(counter, "fixed-window", 0) for _ in range(3)] == [True, True, False]  # kept


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_sweep_drops_each_window_when_it_ends_whatever_the_other_windows(
        strategy: str) -> None:
    # Two window lengths, their keys interleaved: the minute's go after a minute, the hour's
    # stay until the hour is over (each table is swept up to its first live entry). Two
    # minutes: the sliding window counter keeps the previous window too.
    clock = Clock()
    counter = MemoryCounter(strategy, clock=clock)
    minute, hour = THREE, parse("3/hour")
    for client in range(100):
        keys = [key_for(f"c{client}", key_suffix(strategy, "chat", item)) for item in (minute, hour)]
        assert counter.check(keys, [minute, hour], [1, 1], peek=False).allowed
    assert len(counter) == 200
    clock.now += 121
    counter.sweep(clock.now)
    assert len(counter) == 100
    clock.now += 2 * 3600
    counter.sweep(clock.now)
    assert len(counter) == 0
    # A client whose windows all ended starts afresh.
    keys = [key_for("c0", key_suffix(strategy, "chat", minute))]
    assert [counter.check(keys, [minute], [1], peek=False).allowed for _ in range(4)] == [
        True, True, True, False]


@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window-counter"])
def test_counts_are_left_out_of_the_garbage_collectors_walks(strategy: str) -> None:
    # A full collection walks every tracked container: a million users' counts must not be
    # among them (tuples of numbers are untracked once the collector has seen them).
    counter = MemoryCounter(strategy, clock=Clock())
    for client in range(1000):
        hit(counter, strategy, client)
    gc.collect()
    entries = [e for table in counter._tables.values() for e in table.values()]
    assert len(entries) == 1000
    assert not any(gc.is_tracked(entry) for entry in entries)


def test_memory_max_keys_reaches_the_app(make_client: ClientFactory) -> None:
    client = make_client(memory_max_keys=1000, rate_limit_per_address="off")
    for n in range(1500):
        answer = client.post("/chat", json={"message": "hi"}, headers={"User-Agent": f"bot-{n}"})
        assert answer.status_code == HTTPStatus.OK
    assert len(client.app.state.limiter.counter) <= 1000  # type: ignore[attr-defined]


def test_memory_max_keys_also_bounds_the_fail_open_fallback(make_client: ClientFactory) -> None:
    # Redis unreachable, FAIL_MODE=open: every client is counted in this replica's memory,
    # which must be as bounded as memory:// itself.
    client = make_client(storage_uri=f"redis://127.0.0.1:{free_port()}/0", fail_mode="open",
                         memory_max_keys=1000, rate_limit_per_address="off")
    for n in range(1500):
        answer = chat(client, "hi", agent=f"bot-{n}")
        assert answer.status_code == HTTPStatus.OK
        assert answer.headers["X-RateLimit-Degraded"] == "storage-unreachable"
    assert len(client.app.state.limiter.breaker.fallback) <= 1000  # type: ignore[attr-defined]


# A fresh interpreter measures its own resident memory (VmRSS) while 100,000 clients arrive in
# one window, then 100,000 more, then the window ends, then 100,000 new ones.
FLOOD = r"""
import gc, hashlib, json, sys
from limits import parse
from chatlimit.limiter.keys import key_for, key_suffix
from chatlimit.storage import MemoryCounter

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

strategy = sys.argv[1]
clock = [1000.0]
counter = MemoryCounter(strategy, clock=lambda: clock[0])  # the default MEMORY_MAX_KEYS
own, ceiling = parse("3/minute"), parse("30/minute")

def flood(start, count):
    for n in range(start, start + count):
        who = hashlib.blake2b(str(n).encode(), digest_size=16).hexdigest()
        keys = [key_for(f"{who}:{who}", key_suffix(strategy, "chat", own)),
                key_for(who, key_suffix(strategy, "chat", ceiling))]
        counter.check(keys, [own, ceiling], [1, 1], peek=False)

out = {"before": rss_mb()}
flood(0, 100_000)
out.update(first_100k=rss_mb(), keys_first=len(counter))
flood(100_000, 100_000)
out.update(second_100k=rss_mb(), keys_second=len(counter))
clock[0] += 3600  # the window is over; the next check sweeps
counter.check([key_for("late", key_suffix(strategy, "chat", own))], [own], [1], peek=False)
gc.collect()
out.update(after_window=rss_mb(), keys_after=len(counter))
flood(500_000, 100_000)
out.update(next_100k=rss_mb())
print(json.dumps(out))
"""


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
def test_100k_clients_in_one_window_use_bounded_memory_given_back_after_it(
    strategy: str, record_property: pytest.RecordProperty
) -> None:
    done = subprocess.run([sys.executable, "-c", FLOOD, strategy], capture_output=True, text=True,
                          timeout=120, check=True)
    rss = json.loads(done.stdout)
    record_property("rss_mb", rss)
    print(f"\n{strategy}: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    assert rss["keys_first"] <= 100_000 and rss["keys_second"] <= 100_000
    assert rss["keys_after"] == 1
    grown = rss["first_100k"] - rss["before"]
    assert grown < 150  # MB: about 0.3 KB per key for fixed windows, 1 KB for moving ones
    assert rss["second_100k"] - rss["first_100k"] < 0.1 * grown + 5  # capped, not growing
    assert rss["after_window"] < rss["second_100k"] - 0.2 * grown  # given back, partly to the OS
    assert rss["next_100k"] < rss["second_100k"] + 0.1 * grown + 5  # and the rest is reused
