"""GET /api/stats (observe/recent.py): this replica's last minute, in five-second buckets."""

from __future__ import annotations

from chatlimit.observe.recent import BUCKET_SECONDS, BUCKETS, Recent

from ...support import ClientFactory


def test_stats_count_allowed_and_blocked_requests_of_the_last_minute(make_client: ClientFactory) -> None:
    client = make_client(rate_limit="2/minute")
    for _ in range(5):
        client.post("/chat", json={"message": "hi"})
    client.get("/api/quota")  # a read, not a decision
    stats = client.get("/api/stats").json()
    assert stats["served_by"] == "test-1"
    assert (stats["allowed"], stats["blocked"], stats["shadow"]) == (2, 3, 0)
    assert stats["window_seconds"] == BUCKETS * BUCKET_SECONDS == 60
    assert len(stats["series"]["allowed"]) == BUCKETS
    assert sum(stats["series"]["blocked"]) == 3


def test_buckets_older_than_the_window_drop_out() -> None:
    now = [1000.0]
    recent = Recent(clock=lambda: now[0])
    recent.record(0)
    recent.record(1)
    now[0] += BUCKET_SECONDS
    recent.record(0)
    summary = recent.summary()
    assert summary["series"] == {"allowed": [0] * (BUCKETS - 2) + [1, 1],  # type: ignore[comparison-overlap]
                                 "blocked": [0] * (BUCKETS - 2) + [1, 0],
                                 "shadow": [0] * BUCKETS}
    now[0] += BUCKET_SECONDS * (BUCKETS - 1)
    assert (summary := recent.summary())["allowed"] == 1 and summary["blocked"] == 0
    now[0] += BUCKET_SECONDS
    assert recent.summary()["allowed"] == 0
    recent.record(1)  # the slot is reused for the new bucket, its old counts gone
    assert (recent.summary()["allowed"], recent.summary()["blocked"]) == (0, 1)
