"""The streaming bench's client: N concurrent streamed replies (`Accept: text/event-stream`),
each connection its own user, each asking for a fixed number of replies one after another.

Raw asyncio sockets rather than httpx: at a thousand streams the client shares the app's two
cores, and its cost per event must stay small. Every connection is opened before any request
is sent, then all requests go out at once. It only needs to time the first `delta` event
of each reply and count them, so it scans the chunked body for event names instead of parsing
it. Run as a child process, printing one JSON line:

    python -m chatlimit.tools.bench.stream HOST PORT STREAMS REPLIES MESSAGE
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from .wrk import user_headers

DELTA, DONE, ERROR = b"event: delta", b"event: done", b"event: error"


def _request(host: str, user: int, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    headers = user_headers(100_000 + user)  # not the users curve's users
    return (
        f"POST /chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nUser-Agent: {headers['User-Agent']}\r\n"
        f"X-Forwarded-For: {headers['X-Forwarded-For']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _one_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     request: bytes) -> dict[str, Any]:
    sent = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    first = None
    tokens = 0
    tail = b""
    while True:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("the app closed the stream")
        window = tail + data
        count = window.count(DELTA)
        if count and first is None:
            first = time.perf_counter()
        tokens += count
        if DONE in window or ERROR in window or status != 200:
            # The last chunk ("0\r\n\r\n") follows the done event; wait for it so the next
            # request starts on a clean connection.
            while not window.endswith(b"0\r\n\r\n"):
                more = await reader.read(65536)
                if not more:
                    break
                window += more
            break
        tail = window[-len(DELTA):]
    ended = time.perf_counter()
    ttft = (first or ended) - sent
    rate = (tokens - 1) / (ended - first) if first and tokens > 1 and ended > first else 0.0
    return {"status": status, "ttft": ttft, "tokens": tokens, "seconds": ended - sent,
            "tokens_per_s": rate}


async def _stream_user(host: str, port: int, user: int, replies: int, message: str,
                       connected: asyncio.Queue[bool], start: asyncio.Event,
                       out: list[dict[str, Any]]) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except BaseException:
        connected.put_nowait(False)
        raise
    connected.put_nowait(True)
    request = _request(host, user, message)
    await start.wait()
    try:
        for _ in range(replies):
            out.append(await _one_reply(reader, writer, request))
    finally:
        writer.close()


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(host: str, port: int, streams: int, replies: int, message: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    start = asyncio.Event()
    connected: asyncio.Queue[bool] = asyncio.Queue()
    tasks = [asyncio.create_task(_stream_user(host, port, u, replies, message, connected,
                                              start, out))
             for u in range(streams)]
    # Every connection open first, then every request at once: "N concurrent streams" is one
    # burst, not requests trickling out as connections happen to complete.
    for _ in range(streams):
        await connected.get()
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - began
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    ok = [r for r in out if r["status"] == 200]
    ttft = [r["ttft"] * 1000 for r in ok]
    return {
        "streams": streams, "replies": len(out), "ok": len(ok),
        "non_200": len(out) - len(ok), "errors": len(errors), "error_sample": errors[:3],
        "wall_seconds": round(wall, 3),
        "ttft_p50_ms": round(_pct(ttft, 50), 2), "ttft_p99_ms": round(_pct(ttft, 99), 2),
        "tokens_per_s_p50": round(statistics.median([r["tokens_per_s"] for r in ok] or [0]), 2),
        "tokens": sum(r["tokens"] for r in ok),
        "tokens_per_s_total": round(sum(r["tokens"] for r in ok) / wall, 1) if wall else 0.0,
    }


def main() -> None:
    host, port, streams, replies = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    message = sys.argv[5]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(host, port, streams, replies, message))))


if __name__ == "__main__":
    main()
