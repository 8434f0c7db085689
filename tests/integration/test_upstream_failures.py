"""When the model fails, /chat gives a designed answer, never a 500: nothing listening -> 502
upstream_unavailable, no first token within LLM_TIMEOUT -> 504 upstream_timeout, the model's
own 429 -> 503 upstream_busy with its Retry-After. Against real `chatlimit model` processes,
stopped, frozen with SIGSTOP, or answering 429. (A stream cut mid-way: test_streaming_chat.)"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

from chatlimit.tools.processes import ModelServer, free_port

from ..support import ClientFactory
from .streaming import SSE

pytestmark = pytest.mark.integration

ACCEPTS = [pytest.param({}, id="json"), pytest.param(SSE, id="sse")]


@pytest.fixture
def model(tmp_path: Path) -> Iterator[ModelServer]:
    with ModelServer(tmp_path, MODEL_TOKEN_DELAY_MS="1") as server:
        yield server


@pytest.mark.parametrize("accept", ACCEPTS)
def test_nothing_listening_is_502_upstream_unavailable(
    make_client: ClientFactory, accept: dict[str, str]
) -> None:
    client = make_client(llm_base_url=f"http://127.0.0.1:{free_port()}/v1")
    answer = client.post("/chat", json={"message": "hi"}, headers=accept)
    assert answer.status_code == HTTPStatus.BAD_GATEWAY
    assert answer.json() == {"error": "upstream_unavailable",
                             "detail": "The model cannot be reached."}
    assert answer.headers["x-ratelimit-remaining"] == "2"  # the request was counted


@pytest.mark.parametrize("accept", ACCEPTS)
def test_a_frozen_model_is_504_upstream_timeout(
    make_client: ClientFactory, model: ModelServer, accept: dict[str, str]
) -> None:
    client = make_client(llm_base_url=model.api_url, llm_timeout=0.5)
    assert client.post("/chat", json={"message": "hi"}).status_code == HTTPStatus.OK
    model.process.signal(signal.SIGSTOP)
    try:
        answer = client.post("/chat", json={"message": "hi"}, headers=accept)
    finally:
        model.process.signal(signal.SIGCONT)
    assert answer.status_code == HTTPStatus.GATEWAY_TIMEOUT
    assert answer.json() == {"error": "upstream_timeout",
                             "detail": "The model sent nothing within 0.5 s."}
    assert client.post("/chat", json={"message": "hi"}).status_code == HTTPStatus.OK


@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_models_own_429_is_503_upstream_busy_with_its_retry_after(
    make_client: ClientFactory, tmp_path: Path, accept: dict[str, str]
) -> None:
    with ModelServer(tmp_path, MODEL_BUSY="7") as busy:
        client = make_client(llm_base_url=busy.api_url)
        answer = client.post("/chat", json={"message": "hi"}, headers=accept)
    assert answer.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert answer.headers["retry-after"] == "7"
    assert answer.json() == {
        "error": "upstream_busy", "retry_after": 7,
        "detail": "The model is busy (it answered 429); try again shortly.",
    }


def test_a_model_that_stopped_is_502_and_one_that_is_back_answers_again(
    make_client: ClientFactory, model: ModelServer
) -> None:
    client = make_client(llm_base_url=model.api_url)
    model.stop()
    assert client.post("/chat", json={"message": "hi"}).status_code == HTTPStatus.BAD_GATEWAY
    model.start()
    assert client.post("/chat", json={"message": "hi"}).status_code == HTTPStatus.OK
