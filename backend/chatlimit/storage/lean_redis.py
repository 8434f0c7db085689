"""A lean asyncio Redis client for the limiter's one call per request, on a single server.

redis-py's asyncio client spends about 75 µs of CPU on each EVALSHA (connection pool, retry
wrapper, command packing in Python, a task per timeout); this one spends 6 to 12 µs, which was
most of what separated the Redis variants from the in-memory one in `chatlimit bench`. It
keeps one connection and pipelines on it: the commands of one event-loop iteration go out in
one write, and each takes its reply in order (Redis answers one connection's commands in
order), parsed by hiredis. Each request still makes exactly one round trip of its own.

Used for plain `redis://` and `redis+unix://` URIs only; TLS, Sentinel and Cluster keep
redis-py (storage/redis_clients.py). It raises redis-py's exception types, so callers handle
both clients alike. Waits are bounded as in redis-py: the connect timeout, then the socket
timeout, which measures Redis's silence, not this process's own delays: it runs from the
write (which waits for the loop's next turn: under a burst of a thousand streams that turn
came later than the timeout, and the replica read its own busy loop as an outage), and it
waits on while Redis is still answering the commands ahead. So a frozen Redis is given up on
within two socket timeouts.
A command that times out closes the connection and fails every command in flight on it:
after a missed reply the order of the rest can no longer be trusted. A command is never
re-sent once written, so a lost reply can never count a request twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..uri import StorageLocation


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.pending: list[bytes] = []  # commands written in this loop iteration, sent together
        self.queued = 0  # commands queued on this connection, and replies read: the n-th
        self.answered = 0  # reply answers the n-th command
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.heard = 0.0  # loop time of Redis's last answer

    def queue(self, command: bytes, waiter: asyncio.Future[Any]) -> None:
        # Requests that arrive together (one read of many HTTP requests) share one write to
        # Redis: fewer system calls here, fewer reads in Redis. Order is kept.
        if self.closed:
            waiter.set_exception(RedisConnectionError("connection closed"))
            return
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(command)
        self.waiters.append(waiter)
        self.queued += 1

    def flush(self) -> None:
        if self.pending and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self.pending))
            # One timer per write: replies come in order, so its last reply answers for all
            # (counted, not looked up on a waiter: a cancelled request's waiter is done early).
            self.loop.call_later(self.timeout, self.expire, self.queued)
        self.pending.clear()

    def expire(self, until: int) -> None:
        if self.answered >= until or self.closed:
            return
        if self.loop.time() - self.heard < self.timeout:  # answering the commands ahead
            self.loop.call_later(self.timeout, self.expire, until)
            return
        self.fail(RedisTimeoutError("Timeout reading from Redis"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.heard = self.loop.time()
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                self.answered += 1
                if self.waiters:
                    waiter = self.waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.fail(RedisConnectionError(f"protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError("connection closed by server" if exc is None else str(exc)))

    def fail(self, error: Exception) -> None:
        """Close the connection and fail every command still waiting on it."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class LeanRedis:
    """One pipelined connection to one Redis server (TCP or a Unix socket)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        connect_timeout: float = 0.25,
        socket_timeout: float = 0.25,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self._handshake: list[tuple[Any, ...]] = []
        if password is not None:
            self._handshake.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            self._handshake.append(("SELECT", db))
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self._protocol: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    @classmethod
    def from_location(
        cls, location: StorageLocation, *, connect_timeout: float, socket_timeout: float
    ) -> LeanRedis | None:
        """The client for a plain redis:// or redis+unix:// URI, else None (use redis-py)."""
        if location.scheme not in ("redis", "redis+unix") or set(location.query) - {"db"}:
            return None  # other options are redis-py's to interpret
        common: dict[str, Any] = {
            "username": location.username,
            "password": location.password,
            "db": location.db,
            "connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
        }
        if location.scheme == "redis+unix":
            return cls(path=location.path, **common)
        host, port = location.hosts[0] if location.hosts else ("127.0.0.1", 6379)
        return cls(host=host, port=port, **common)

    def register_script(self, source: str) -> Callable[..., Awaitable[Any]]:
        """Like redis-py's: an awaitable script(keys=..., args=...) that runs EVALSHA, and EVAL
        once when the server does not know the script yet."""
        sha = hashlib.sha1(source.encode()).hexdigest()

        async def script(keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
            # The hot path, one coroutine deep: the live connection's queue, then its reply.
            protocol = self._protocol
            if protocol is None or protocol.closed or \
                    protocol.loop is not asyncio.get_running_loop():
                protocol = await self._connection()
            waiter = protocol.loop.create_future()
            protocol.queue(hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args)),
                           waiter)
            reply = await waiter
            if isinstance(reply, hiredis.ReplyError):
                if not str(reply).startswith("NOSCRIPT"):
                    raise ResponseError(str(reply))
                return await self.execute("EVAL", source, len(keys), *keys, *args)
            return reply

        return script

    async def execute(self, *command: Any) -> Any:
        protocol = await self._connection()
        return await self._send(protocol, command)

    async def ping(self) -> bool:
        return bool(await self.execute("PING"))

    async def aclose(self) -> None:
        if self._protocol is not None and not self._protocol.closed:
            self._protocol.fail(RedisConnectionError("client closed"))
        self._protocol = None

    async def _send(self, protocol: _Protocol, command: Sequence[Any]) -> Any:
        waiter: asyncio.Future[Any] = protocol.loop.create_future()
        protocol.queue(hiredis.pack_command(tuple(command)), waiter)
        reply = await waiter
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            raise (
                NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)
            )
        return reply

    async def _connection(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        if protocol is not None and not protocol.closed and self._loop is loop:
            return protocol
        if self._connecting is not None and self._loop is loop and not self._connecting.done():
            return await asyncio.shield(self._connecting)
        if protocol is not None and protocol.transport is not None and self._loop is not loop:
            with contextlib.suppress(Exception):  # its loop may be closed already
                protocol.transport.abort()
        self._loop = loop
        self._connecting = loop.create_future()
        try:
            protocol = await self._connect(loop)
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()  # retrieved: no "never retrieved" warning
            self._connecting = None
            raise
        self._protocol = protocol
        self._connecting.set_result(protocol)
        return protocol

    def _protocol_factory(self) -> _Protocol:
        return _Protocol(self.socket_timeout)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        try:
            if self.path is not None:
                opening = loop.create_unix_connection(self._protocol_factory, self.path)
            else:
                opening = loop.create_connection(self._protocol_factory, self.host, self.port)
            transport, protocol = await asyncio.wait_for(opening, self.connect_timeout)
            protocol.transport = transport  # uvloop may call connection_made only later
        except (TimeoutError, OSError) as exc:
            where = self.path or f"{self.host}:{self.port}"
            raise RedisConnectionError(f"cannot connect to Redis at {where}: {exc!r}") from None
        for step in self._handshake:
            try:
                await self._send(protocol, [s for s in step if s is not None])
            except ResponseError as exc:
                protocol.fail(RedisConnectionError(str(exc)))
                raise RedisConnectionError(f"Redis refused {step[0]}: {exc}") from None
        return protocol
