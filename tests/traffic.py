"""Chat traffic for tests: one message, N in a row, N at once, and what came back.

One toolkit for every layer: `client` is anything httpx-shaped (a Starlette TestClient is an
httpx.Client) or a base URL, so in-process tests, real processes, nginx and the container stand
send the same requests and count the answers the same way.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from http import HTTPStatus

import httpx

OK = HTTPStatus.OK
LIMITED = HTTPStatus.TOO_MANY_REQUESTS


def chat_headers(agent: str | None = None, forwarded: str | None = None,
                 headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Who is asking: a User-Agent and an X-Forwarded-For, on top of any other headers."""
    found = dict(headers or {})
    if agent is not None:
        found["User-Agent"] = agent
    if forwarded is not None:
        found["X-Forwarded-For"] = forwarded
    return found


def chat(client: httpx.Client | str, message: str = "hello", *, agent: str | None = None,
         forwarded: str | None = None, headers: Mapping[str, str] | None = None,
         path: str = "/chat", timeout: float = 10) -> httpx.Response:
    """POST one chat message (a JSON answer, not the stream)."""
    sent = chat_headers(agent, forwarded, headers)
    if isinstance(client, str):
        return httpx.post(f"{client}{path}", json={"message": message}, headers=sent,
                          timeout=timeout)
    return client.post(path, json={"message": message}, headers=sent)


def send(client: httpx.Client | str, count: int, message: str = "hello", *,
         agent: str | None = None, forwarded: str | None = None,
         headers: Mapping[str, str] | None = None, path: str = "/chat") -> list[httpx.Response]:
    """`count` chat messages one after another, each answered before the next is sent."""
    if isinstance(client, str):
        with httpx.Client(base_url=client, timeout=10) as http:
            return send(http, count, message, agent=agent, forwarded=forwarded, headers=headers,
                        path=path)
    return [chat(client, message, agent=agent, forwarded=forwarded, headers=headers, path=path)
            for _ in range(count)]


async def burst_async(url: str, count: int, message: str = "hello", *,
                      agent: str | None = None, forwarded: str | None = None,
                      headers: Mapping[str, str] | None = None, path: str = "/chat",
                      timeout: float = 60) -> list[httpx.Response]:
    """`count` chat messages to `url` all at once, one connection each (for a test that is
    already inside an event loop; `burst` is the same from plain code)."""
    sent = chat_headers(agent, forwarded, headers)
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits,
                                 headers=sent) as client:
        return await asyncio.gather(*(
            client.post(path, json={"message": message}) for _ in range(count)))


def burst(url: str, count: int, message: str = "hello", *, agent: str | None = None,
          forwarded: str | None = None, headers: Mapping[str, str] | None = None,
          path: str = "/chat", timeout: float = 60) -> list[httpx.Response]:
    """`count` chat messages to `url` all at once, as one client."""
    return asyncio.run(burst_async(url, count, message, agent=agent, forwarded=forwarded,
                                   headers=headers, path=path, timeout=timeout))


def codes(answers: Iterable[httpx.Response]) -> list[int]:
    return [answer.status_code for answer in answers]


def statuses(answers: Iterable[httpx.Response]) -> Counter[int]:
    """How many answers had each status: `statuses(a) == {200: 3, 429: 7}`."""
    return Counter(codes(answers))


def served_by(answers: Iterable[httpx.Response], status: int | None = None) -> Counter[str]:
    """How many answers each replica gave (X-Served-By), only those with `status` if given."""
    return Counter(answer.headers.get("x-served-by", "?") for answer in answers
                   if status is None or answer.status_code == status)


def remaining(answer: httpx.Response) -> int | None:
    """X-RateLimit-Remaining as a number, None when the answer has none. Its first value:
    stock slowapi (RATE_LIMIT_ENGINE=slowapi) sends one per stacked decorator ("2, 2")."""
    value = answer.headers.get("x-ratelimit-remaining")
    return int(value.split(",")[0]) if value is not None else None
