"""LOG_FORMAT=json under a real `chatlimit serve`: every line is one JSON object, refusals name
the policy and the hashed identity, never the raw address or User-Agent."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from chatlimit.tools.processes import wait_until

from ..support import ServedApp

pytestmark = [pytest.mark.integration]


def test_json_logs_carry_time_level_replica_event_and_refusals_hash_the_identity(tmp_path: Path) -> None:
    agent = "agent-raw-user-agent-42"
    with ServedApp(tmp_path, name="json-1", storage_uri="memory://", rate_limit="1/minute",
                   log_format="json", access_log="true") as app:
        for _ in range(3):
            httpx.post(f"{app.url}/chat", json={"message": "hi"}, headers={"User-Agent": agent})

        def refusal_logged() -> bool:
            return '"event": "refused"' in app.log

        wait_until(refusal_logged, timeout=10, what="the refusal log line")
    lines = [json.loads(line) for line in app.log.splitlines() if line.strip()]
    assert lines, "no log lines"
    for line in lines:
        assert {"time", "level", "replica", "event", "message"} <= set(line)
        assert line["replica"] == "json-1"
    events = {line["event"] for line in lines}
    assert {"serving", "refused"} <= events
    refused = next(line for line in lines if line["event"] == "refused")
    assert refused["policy"] == "1 per 1 minute"
    assert refused["kind"] == "requests"
    address_digest, _, user_digest = refused["identity"].partition(":")
    assert len(address_digest) == len(user_digest) == 24  # blake2b, 12 bytes, hex
    assert agent not in app.log
    assert "127.0.0.1:" not in json.dumps(refused)
    # uvicorn's own lines (start-up, the access log) are JSON too.
    assert any(line["logger"].startswith("uvicorn") for line in lines)
