"""`chatlimit compare URL`: the guide's scenario against any running deployment.

One client (one fixed User-Agent per run, so a rerun starts with a fresh quota) sends N chat
messages and reads who served each and what was left. More allowed than the limit means the
replicas count alone: the bypass that shared Redis fixes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import httpx

from .. import __version__
from . import TOOLS
from .stack_cli import positive

Verdict = Literal["enforced", "bypassed", "inconclusive"]


@dataclass(frozen=True)
class Row:
    number: int
    served_by: str
    status: int | None  # None: no HTTP response at all
    remaining: int | None
    error: str = ""


@dataclass
class Result:
    rows: list[Row]
    limit: int | None
    user_agent: str = ""
    replicas: set[str] = field(default_factory=set)

    @property
    def allowed(self) -> int:
        return sum(1 for row in self.rows if row.status == 200)

    @property
    def failed(self) -> list[Row]:
        return [row for row in self.rows if row.status not in (200, 429)]

    @property
    def verdict(self) -> Verdict:
        if self.failed or self.limit is None:
            return "inconclusive"
        return "enforced" if self.allowed <= self.limit else "bypassed"

    def verdict_line(self) -> str:
        total, allowed, limit = len(self.rows), self.allowed, self.limit
        if self.limit is None:
            return f"INCONCLUSIVE: {allowed} of {total} allowed, limit unknown (pass --limit)"
        if self.failed:
            codes = sorted({str(row.status or row.error) for row in self.failed})
            return (f"INCONCLUSIVE: {len(self.failed)} of {total} requests failed "
                    f"({', '.join(codes)})")
        if self.verdict == "enforced":
            return f"ENFORCED: {allowed} of {total} allowed (limit {limit})"
        why = "each replica counts alone" if len(self.replicas) > 1 else "the limit did not hold"
        return f"BYPASSED: {allowed} of {total} allowed, limit {limit}: {why}"


class Unreachable(Exception):
    """No connection to the deployment at all (refused, unroutable, timed out)."""

    def __init__(self, url: str, error: httpx.TransportError) -> None:
        reason = (_os_reason(error) or str(error) or type(error).__name__).rstrip(".")
        super().__init__(f"nothing answers at {url} ({reason}): start the app "
                         "(./scripts/run) or a cluster (chatlimit cluster), or check the URL")


def _os_reason(error: BaseException) -> str:
    """What the socket said, from under httpx's and anyio's wrappers ("All connection
    attempts failed" hides the refusal)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, OSError) and seen.errno is not None and seen.strerror:
            return os.strerror(seen.errno).lower()
        inner = [e for e in getattr(seen, "exceptions", ()) if isinstance(e, OSError)]
        seen = inner[0] if inner else (seen.__cause__ or seen.__context__)
    return ""


def base_url(url: str) -> str:
    """The deployment's base URL from what a person would type: a bare host:port gets
    http://, and a URL ending in /chat (the endpoint itself) is taken back to its base."""
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"the URL must start with http:// or https://, not {url}")
    text = text.rstrip("/")
    return text.removesuffix("/chat").rstrip("/") if text.endswith("/chat") else text


def default_user_agent() -> str:
    return f"chatlimit-compare/{__version__} (run {secrets.token_hex(4)})"


async def run(
    url: str,
    *,
    requests: int = 6,
    concurrency: int = 1,
    limit: int | None = None,
    user_agent: str | None = None,
    timeout: float = 10.0,
    on_row: Callable[[Row], None] | None = None,
) -> Result:
    """Send `requests` chat messages as one client, `concurrency` at a time. Raises
    Unreachable at the first request that gets no HTTP answer at all: nothing listens there,
    and N rows of the same connection error would say so N times."""
    base = base_url(url)
    agent = user_agent or default_user_agent()
    gate = asyncio.Semaphore(max(1, concurrency))
    pool = httpx.Limits(max_connections=max(1, concurrency))
    async with httpx.AsyncClient(
        headers={"User-Agent": agent}, timeout=timeout, limits=pool
    ) as client:

        async def one(number: int) -> Row:
            async with gate:
                try:
                    response = await client.post(
                        f"{base}/chat", json={"message": f"compare message {number}"}
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    raise Unreachable(base, exc) from None
                except httpx.HTTPError as exc:
                    row = Row(number, "-", None, None, type(exc).__name__)
                else:
                    row = Row(
                        number,
                        response.headers.get("x-served-by", "?"),
                        response.status_code,
                        _int(response.headers.get("x-ratelimit-remaining")),
                    )
                    nonlocal limit
                    if limit is None:
                        limit = _int(response.headers.get("x-ratelimit-limit"))
            if on_row is not None:
                on_row(row)
            return row

        # A task group, not gather: the first Unreachable cancels the requests still waiting.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(n)) for n in range(1, requests + 1)]
        except ExceptionGroup as failed:
            unreachable = [e for e in failed.exceptions if isinstance(e, Unreachable)]
            if unreachable:
                raise unreachable[0] from None
            raise
        rows = sorted((task.result() for task in tasks), key=lambda row: row.number)
        if limit is None:
            limit = await _limit_from_info(client, base)
    return Result(rows, limit, agent, {r.served_by for r in rows if r.status is not None})


async def _limit_from_info(client: httpx.AsyncClient, base: str) -> int | None:
    try:
        limits = (await client.get(f"{base}/api/info")).json().get("limits") or []
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    match = re.match(r"\s*(\d+)", str(limits[0])) if limits else None
    return int(match.group(1)) if match else None


def _int(value: str | None) -> int | None:
    # A header sent twice arrives joined ("2, 2"): stock slowapi sends its X-RateLimit-*
    # headers once per stacked decorator (RATE_LIMIT_ENGINE=slowapi).
    try:
        return int(value.split(",")[0]) if value is not None else None
    except ValueError:
        return None


class Table:
    """The request table, one row per line as results arrive; colour only on a TTY."""

    COLUMNS: tuple[str, ...] = ("request", "served by", "status", "remaining")
    WIDTHS: tuple[int, ...] = (7, 12, 6, 9)

    def __init__(self, out: TextIO, colour: bool | None = None) -> None:
        self.out = out
        if colour is None:
            colour = out.isatty() and "NO_COLOR" not in os.environ and os.environ.get(
                "TERM") != "dumb"
        self.colour = colour
        self.headed = False

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def header(self) -> None:
        self.headed = True
        cells = [c.ljust(w) for c, w in zip(self.COLUMNS, self.WIDTHS, strict=True)]
        self.out.write(self.paint("  ".join(cells).rstrip(), "1") + "\n")

    def row(self, row: Row) -> None:
        if not self.headed:  # the header comes with the first row, so an early stop has none
            self.header()
        status = str(row.status) if row.status is not None else row.error
        cells = [str(row.number), row.served_by, status,
                 "-" if row.remaining is None else str(row.remaining)]
        padded = [c.ljust(w) for c, w in zip(cells, self.WIDTHS, strict=True)]
        code = {200: "32", 429: "33"}.get(row.status or 0, "31")
        padded[2] = self.paint(padded[2], code)
        self.out.write("  ".join(padded).rstrip() + "\n")
        self.out.flush()

    def verdict(self, result: Result) -> None:
        code = {"enforced": "1;32", "bypassed": "1;31"}.get(result.verdict, "1;33")
        self.out.write(self.paint(result.verdict_line(), code) + "\n")


def add_parser(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help=TOOLS["compare"],
        description="Sends N chat messages as one client and prints who served each, the "
        "status and the remaining quota, then ENFORCED or BYPASSED.",
    )
    compare.add_argument("url", help="the deployment, e.g. http://127.0.0.1:8080 (127.0.0.1:8080 "
                         "and .../chat mean the same)")
    compare.add_argument("--requests", type=positive,
                         help="messages (default 6; with --tokens at most 40)")
    compare.add_argument("--concurrency", type=positive, default=1,
                         help="send this many at once (default 1: one after another)")
    compare.add_argument("--expect", choices=["enforced", "bypassed"],
                         help="exit 1 unless the verdict is this")
    compare.add_argument("--limit", type=positive,
                         help="the limit (default: read from X-RateLimit-Limit or /api/info)")
    compare.add_argument("--tokens", action="store_true",
                         help="spend the token budget with long prompts instead, and compare "
                         "what the model billed with TOKEN_LIMIT")
    compare.add_argument("--ledger", metavar="URL",
                         help="with --tokens: the model's ledger (default URL/model/v1/ledger)")
    compare.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.tokens:
        from . import compare_tokens

        return compare_tokens.main(args.url, requests=args.requests or 40,
                                   concurrency=args.concurrency, ledger=args.ledger,
                                   expect=args.expect)
    return main(args.url, requests=args.requests or 6, concurrency=args.concurrency,
                expect=args.expect, limit=args.limit)


def main(
    url: str,
    *,
    requests: int = 6,
    concurrency: int = 1,
    expect: Verdict | None = None,
    limit: int | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the table and the verdict. Exit code 0 when conclusive (and as expected)."""
    out = out or sys.stdout
    table = Table(out)
    sequential = concurrency <= 1
    try:
        result = asyncio.run(run(url, requests=requests, concurrency=concurrency, limit=limit,
                                 on_row=table.row if sequential else None))
    except (ValueError, Unreachable) as exc:
        print(f"chatlimit compare: {exc}", file=sys.stderr)
        return 1
    if not sequential:
        for row in result.rows:
            table.row(row)
    table.verdict(result)
    if result.limit is not None and result.allowed == requests <= result.limit:
        out.write(f"note: {requests} requests do not exceed the limit of {result.limit}; "
                  f"use --requests {result.limit * 2}\n")
    if expect is not None and result.verdict != expect:
        print(f"chatlimit compare: expected {expect.upper()}, got {result.verdict.upper()}",
              file=sys.stderr)
        return 1
    if expect is not None:
        return 0
    return 0 if result.verdict != "inconclusive" else 1
