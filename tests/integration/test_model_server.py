"""`chatlimit model` speaks the OpenAI API: the official SDK against the real process over HTTP,
streamed and not, usage in every answer, a ledger per user, and a 429 when told to be busy."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import openai
import pytest

from chatlimit.tools.processes import ModelServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    with ModelServer(tmp_path_factory.mktemp("model"), MODEL_TOKEN_DELAY_MS="1") as server:
        yield server


@pytest.fixture
def client(model: ModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=model.api_url, api_key="none", max_retries=0) as sdk:
        yield sdk


def test_lists_its_one_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["chatlimit-demo"]


def test_answers_without_streaming_with_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="chatlimit-demo", messages=[{"role": "user", "content": "tell me about redis"}],
        user="plain-user",
    )
    text = answer.choices[0].message.content or ""
    assert text.startswith("Redis keeps one shared counter")
    assert answer.usage is not None
    assert answer.usage.completion_tokens == len(text.split())
    assert answer.usage.prompt_tokens == 4


def test_streams_word_by_word_and_ends_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="chatlimit-demo", messages=[{"role": "user", "content": "tell me a story"}],
        stream=True, stream_options={"include_usage": True}, max_tokens=40, user="story-user",
    )
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) == 40
    assert "".join(texts).startswith("Once upon a time")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 40


def test_streams_carry_usage_even_unasked(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="chatlimit-demo", messages=[{"role": "user", "content": "hi"}], stream=True,
    ))
    assert chunks[-1].usage is not None


def test_the_ledger_bills_each_user_their_own_tokens(
    client: openai.OpenAI, model: ModelServer
) -> None:
    for _ in range(2):
        client.chat.completions.create(
            model="chatlimit-demo", messages=[{"role": "user", "content": "thanks"}],
            user="ledger-user", max_tokens=5,
        )
    ledger = model.ledger()
    assert ledger["users"]["ledger-user"] == {
        "requests": 2, "prompt_tokens": 2, "completion_tokens": 10,
    }
    assert ledger["total"]["completion_tokens"] >= 10
    assert ledger["open_streams"] == 0


def test_a_bad_request_gets_openais_error_shape(model: ModelServer) -> None:
    answer = httpx.post(f"{model.api_url}/chat/completions", json={"messages": "no"})
    assert answer.status_code == HTTPStatus.UNPROCESSABLE_ENTITY


def test_a_busy_model_answers_429_with_retry_after(tmp_path: Path) -> None:
    with ModelServer(tmp_path, MODEL_BUSY="7") as busy, openai.OpenAI(
        base_url=busy.api_url, api_key="none", max_retries=0
    ) as sdk:
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(
                model="chatlimit-demo", messages=[{"role": "user", "content": "hi"}],
            )
        assert refused.value.response.headers["retry-after"] == "7"
        assert busy.ledger()["total"]["requests"] == 0
