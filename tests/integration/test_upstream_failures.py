"""When the model fails, /chat gives a designed answer, never a 500: nothing listening -> 502
upstream_unavailable, no first token within LLM_TIMEOUT -> 504 upstream_timeout, the model's
own 429 -> 503 upstream_busy with its Retry-After. Against real `chatlimit model` processes,
stopped, frozen with SIGSTOP, or answering 429, and a loopback server sending streams a model
should not (an error chunk, a chunk that is not JSON). (A stream cut mid-way:
test_streaming_chat.)"""

from __future__ import annotations

import json
import signal
import socketserver
import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

from chatlimit.tools.processes import ModelServer, free_port

from ..support import ClientFactory
from .streaming import SSE, events

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


class _Upstream(socketserver.ThreadingTCPServer):
    """A real HTTP/1.1 server on loopback answering every request with one canned stream, kept
    alive between requests; it counts the connections it was opened."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, events: list[bytes]) -> None:
        self.body = b"".join(b"data: " + e + b"\n\n" for e in events)
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(socketserver.StreamRequestHandler):
    server: _Upstream

    def handle(self) -> None:
        self.server.connections += 1
        while True:
            head = [self.rfile.readline()]
            while head[-1] not in (b"\r\n", b""):
                head.append(self.rfile.readline())
            if head[-1] == b"":
                return  # the client closed the connection
            length = next((int(h.split(b":")[1]) for h in head
                           if h.lower().startswith(b"content-length:")), 0)
            self.rfile.read(length)
            body = self.server.body
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.wfile.flush()


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[_Upstream]:
    server = _Upstream(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _chunk(**fields: object) -> bytes:
    return json.dumps({"object": "chat.completion.chunk", **fields}).encode()


HELLO = _chunk(choices=[{"index": 0, "delta": {"content": "Hello"}}])
USAGE = _chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 1})


@pytest.mark.parametrize("upstream", [
    pytest.param([HELLO, b'{"error": {"message": "overloaded"}}'], id="error chunk"),
    pytest.param([HELLO, b"{not json"], id="not JSON"),
    pytest.param([HELLO, b"[1, 2]"], id="not an object"),
], indirect=True)
def test_a_stream_that_goes_wrong_after_its_first_words_ends_as_upstream_cut(
    make_client: ClientFactory, upstream: _Upstream,
) -> None:
    client = make_client(llm_base_url=upstream.url)
    with client.stream("POST", "/chat", json={"message": "hi"}, headers=SSE) as answer:
        received = list(events(answer))
    assert [name for name, _ in received] == ["meta", "delta", "error"]
    assert received[1][1] == {"text": "Hello"}
    assert received[-1][1]["error"] == "upstream_cut"
    answer = client.post("/chat", json={"message": "hi"})  # the JSON answer
    assert answer.status_code == HTTPStatus.BAD_GATEWAY
    assert answer.json()["error"] == "upstream_cut"


@pytest.mark.parametrize("upstream", [[HELLO, USAGE, b"[DONE]"]], indirect=True)
def test_replies_in_a_row_share_one_connection_to_the_model(
    make_client: ClientFactory, upstream: _Upstream,
) -> None:
    # The reply is read to the end of its body, past [DONE], so the connection goes back to
    # the pool: a new TCP connection per reply would cost the model and the app each time.
    client = make_client(llm_base_url=upstream.url)
    for _ in range(3):
        answer = client.post("/chat", json={"message": "hi"})
        assert answer.json()["reply"] == "Hello"
        assert answer.json()["usage"]["completion_tokens"] == 1  # the upstream's own usage
    assert upstream.connections == 1
