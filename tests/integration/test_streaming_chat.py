"""POST /chat streamed as Server-Sent Events from a real `chatlimit serve` to a real `chatlimit
model`: the events in order, the rate-limit headers before the first byte, the limit decided
before the model is called, usage in every answer, and a client that goes away stopping the
model within a second."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from chatlimit.tools.processes import ModelServer, ServedApp, wait_until

from .streaming import SSE, events, new_user

pytestmark = pytest.mark.integration

_agents = itertools.count()


def agent() -> dict[str, str]:
    """A User-Agent of the test's own: a fresh quota and a fresh line in the model's ledger."""
    return {"User-Agent": f"streaming-test-{next(_agents)}"}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    with ModelServer(tmp_path_factory.mktemp("model"), MODEL_TOKEN_DELAY_MS="30") as server:
        yield server


@pytest.fixture(scope="module")
def app(model: ModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with ServedApp(
        tmp_path_factory.mktemp("app"), "app-1", LLM_BASE_URL=model.api_url,
        RATE_LIMIT="3/minute", RATE_LIMIT_PER_ADDRESS="off", LLM_CONTEXT_TURNS="2",
        LLM_SYSTEM_PROMPT="be brief", LLM_TIMEOUT="5",
    ) as served:
        yield served


def test_a_streamed_reply_is_meta_then_deltas_then_done_with_usage(app: ServedApp) -> None:
    headers = {**SSE, **agent()}
    with httpx.stream("POST", f"{app.url}/chat", json={"message": "hello"}, headers=headers,
                      timeout=10) as answer:
        assert answer.status_code == HTTPStatus.OK
        assert answer.headers["content-type"].startswith("text/event-stream")
        received = list(events(answer))
    names = [name for name, _ in received]
    assert names[0] == "meta" and names[-1] == "done"
    assert set(names[1:-1]) == {"delta"} and len(names) > 10 - 2
    meta = received[0][1]
    assert {k: meta[k] for k in ("served_by", "quota")} == {
        "served_by": "app-1", "quota": {"limit": 3, "remaining": 2, "reset_after": 60}}
    # The reservation: the prompt's estimate plus the max_tokens sent upstream (256).
    assert meta["tokens"]["reserved"] > 256
    assert meta["tokens"]["remaining"] == 2000 - meta["tokens"]["reserved"]
    text = "".join(data["text"] for name, data in received if name == "delta")
    assert text.startswith("Hello! I'm the chatlimit demo bot.")
    done = received[-1][1]
    assert done["usage"]["completion_tokens"] == len(names) - 2
    assert done["usage"]["reported"] is True
    assert done["quota"]["remaining"] == 2
    # Settled: charged the upstream's usage, the rest of the reservation refunded.
    assert done["tokens"]["charged"] == done["usage"]["total_tokens"]
    assert done["tokens"]["remaining"] == 2000 - done["usage"]["total_tokens"]


def test_the_rate_limit_headers_and_first_event_come_before_the_reply_is_complete(
    app: ServedApp, model: ModelServer
) -> None:
    with httpx.stream("POST", f"{app.url}/chat", json={"message": "tell me a story"},
                      headers={**SSE, **agent()}, timeout=10) as answer:
        assert answer.headers["x-ratelimit-remaining"] == "2"
        assert answer.headers["ratelimit"].startswith('"3-per-1-minute";r=2;t=60, "tokens-')
        assert int(answer.headers["x-ratelimit-remaining-tokens"]) < 2000 - 256
        received = events(answer)
        assert next(received)[0] == "meta"
        assert next(received)[0] == "delta"
        assert model.ledger()["open_streams"] == 1  # the model is still generating


def test_a_json_reply_carries_usage_and_the_model_bills_the_hashed_user(
    app: ServedApp, model: ModelServer
) -> None:
    before = model.ledger()
    answer = httpx.post(f"{app.url}/chat", json={"message": "tell me about redis"},
                        headers=agent(), timeout=10)
    assert answer.status_code == HTTPStatus.OK
    body = answer.json()
    assert body["reply"].startswith("Redis keeps one shared counter")
    assert body["usage"]["completion_tokens"] == len(body["reply"].split())
    user = new_user(model.ledger(), before)
    assert "127.0.0.1" not in user and len(user) > 20  # a hash of the key, never an address
    assert model.ledger()["users"][user]["completion_tokens"] == body["usage"]["completion_tokens"]


def test_the_server_caps_the_history_it_forwards(app: ServedApp) -> None:
    history = [{"role": "user" if n % 2 else "assistant", "content": "one two three"}
               for n in range(10)]
    answer = httpx.post(f"{app.url}/chat", json={"message": "hi", "history": history},
                        headers=agent(), timeout=10)
    # "be brief" (2) + the last 2 turns (3 each) + "hi" (1), as the model counted them
    assert answer.json()["usage"]["prompt_tokens"] == 9


def test_a_refused_request_never_reaches_the_model(app: ServedApp, model: ModelServer) -> None:
    headers = agent()
    before = model.ledger()
    statuses = [httpx.post(f"{app.url}/chat", json={"message": "hi"}, headers={**SSE, **headers},
                           timeout=10).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    user = new_user(model.ledger(), before)
    assert model.ledger()["users"][user]["requests"] == 3


def test_a_client_that_goes_away_stops_the_model_within_a_second(
    app: ServedApp, model: ModelServer
) -> None:
    before = model.ledger()
    with httpx.stream("POST", f"{app.url}/chat", json={"message": "tell me a story"},
                      headers={**SSE, **agent()}, timeout=10) as answer:
        deltas = 0
        for name, _ in events(answer):
            deltas += name == "delta"
            if deltas == 5:
                break
    # The connection is closed: the app cancels its stream, which closes the upstream one.
    wait_until(lambda: model.ledger()["open_streams"] == 0, timeout=1,
               what="the model to stop generating")
    user = new_user(model.ledger(), before)
    billed = model.ledger()["users"][user]["completion_tokens"]
    assert 5 <= billed < 60  # the whole story is 256 tokens
    assert model.ledger()["users"][user]["completion_tokens"] == billed  # and it stays there


def test_the_cut_drill_ends_the_stream_with_an_error_event_after_partial_text(
    app: ServedApp,
) -> None:
    with httpx.stream("POST", f"{app.url}/chat", json={"message": "simulate a cut"},
                      headers={**SSE, **agent()}, timeout=10) as answer:
        assert answer.status_code == HTTPStatus.OK
        received = list(events(answer))
    assert [n for n, _ in received].count("delta") == 6
    name, error = received[-1]
    assert name == "error"
    assert error["error"] == "upstream_cut"
    assert error["usage"]["completion_tokens"] == 6
    assert "Traceback" not in app.log


def test_the_model_killed_mid_stream_gives_an_error_event(tmp_path: Path) -> None:
    with ModelServer(tmp_path, MODEL_TOKEN_DELAY_MS="30") as model, ServedApp(
        tmp_path, "app-kill", LLM_BASE_URL=model.api_url
    ) as app:
        with httpx.stream("POST", f"{app.url}/chat", json={"message": "tell me a story"},
                          headers=SSE, timeout=10) as answer:
            received = []
            for name, data in events(answer):
                received.append((name, data))
                if name == "delta" and len(received) == 4:
                    model.process.popen.kill()  # type: ignore[union-attr]
        assert received[-1][0] == "error"
        assert received[-1][1]["error"] == "upstream_cut"
        assert "Traceback" not in app.log
