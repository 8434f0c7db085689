"""TokenBudget: each user's token keys and lease set are worked out once and stay bounded."""

from __future__ import annotations

from limits import parse

from chatlimit.limiter import Breaker
from chatlimit.limiter.budget import TokenBudget
from chatlimit.limiter.plans import CACHE_BOUND
from chatlimit.storage import MemoryCounter


def test_the_keys_remembered_per_user_stay_bounded_and_a_forgotten_user_keeps_its_keys() -> None:
    breaker = Breaker(MemoryCounter("fixed-window"), MemoryCounter("fixed-window"))
    budget = TokenBudget([parse("1000/minute")], 2, 30.0, strategy="fixed-window",
                         scope="chat", breaker=breaker)
    first_keys, first_lease = budget.keys("address:user-0")

    for n in range(3 * CACHE_BOUND):
        budget.keys(f"address:user-{n}")

    assert len(budget._keys) <= CACHE_BOUND + 1
    keys, lease = budget.keys("address:user-0")
    assert keys == first_keys and "user-0" in keys[0]
    assert lease is not None and first_lease is not None
    # The same lease set, a new lease in it: each reply holds its own slot.
    assert lease.key == first_lease.key and lease.id != first_lease.id
