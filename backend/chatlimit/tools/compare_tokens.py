"""`chatlimit compare URL --tokens`: spend one client's token budget with long prompts, then
read what the model billed.

The bill comes from `chatlimit model`'s ledger (through nginx at /model/v1/ledger by default,
or --ledger URL), found by the client's own hashed key that /api/quota reports; without a
ledger it is the usage the answers reported. More billed than TOKEN_LIMIT means the replicas
count alone.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from .compare import Table, Unreachable, Verdict, base_url, default_user_agent

PROMPT = "tell me a story"


@dataclass(frozen=True)
class TokenRow:
    number: int
    served_by: str
    status: int | None
    charged: int | None  # the answer's settled charge
    remaining: int | None  # tokens left after it (the answer's own view)
    exceeded: str = ""  # on a 429: requests, tokens or streams
    error: str = ""


@dataclass
class TokenResult:
    rows: list[TokenRow]
    budget: int | None
    billed: int
    source: str  # "ledger" or "answers"
    replicas: set[str] = field(default_factory=set)

    @property
    def refused_for_tokens(self) -> int:
        return sum(1 for row in self.rows if row.exceeded == "tokens")

    @property
    def failed(self) -> list[TokenRow]:
        return [row for row in self.rows if row.status not in (200, 429)]

    @property
    def verdict(self) -> Verdict:
        if self.budget is None or self.failed:
            return "inconclusive"
        if self.billed > self.budget:
            return "bypassed"
        return "enforced" if self.refused_for_tokens else "inconclusive"

    def verdict_line(self) -> str:
        billed, budget = f"{self.billed:,}", f"{self.budget:,}" if self.budget else "?"
        if self.budget is None:
            return "INCONCLUSIVE: no token budget (X-RateLimit-Limit-Tokens): is TOKEN_LIMIT off?"
        if self.failed:
            codes = sorted({str(row.status or row.error) for row in self.failed})
            return (f"INCONCLUSIVE: {len(self.failed)} of {len(self.rows)} requests failed "
                    f"({', '.join(codes)})")
        if self.verdict == "bypassed":
            why = "each replica counts alone" if len(self.replicas) > 1 \
                else "the budget did not hold"
            return f"BYPASSED: {billed} tokens billed, budget {budget}: {why}"
        if self.verdict == "enforced":
            return f"ENFORCED: {billed} of {budget} tokens billed (budget {budget})"
        return (f"INCONCLUSIVE: {billed} of {budget} tokens billed, and no request was refused "
                "for tokens: raise RATE_LIMIT or --requests")


async def run(
    url: str, *, requests: int = 40, concurrency: int = 1, ledger: str | None = None,
    user_agent: str | None = None, timeout: float = 60.0,
) -> TokenResult:
    """Send up to `requests` long prompts as one client; stop early once every replica seen
    has refused for tokens (the budget is spent wherever it is counted)."""
    base = base_url(url)
    agent = user_agent or default_user_agent()
    gate = asyncio.Semaphore(max(1, concurrency))
    rows: list[TokenRow] = []
    budget: int | None = None
    async with httpx.AsyncClient(headers={"User-Agent": agent}, timeout=timeout) as client:
        done = asyncio.Event()

        async def one(number: int) -> None:
            nonlocal budget
            async with gate:
                if done.is_set():
                    return
                try:
                    answer = await client.post(f"{base}/chat", json={"message": PROMPT})
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    raise Unreachable(base, exc) from None
                except httpx.HTTPError as exc:
                    rows.append(TokenRow(number, "-", None, None, None, error=type(exc).__name__))
                    return
                body = _json(answer)
                tokens = body.get("tokens") or {}
                if budget is None and answer.headers.get("x-ratelimit-limit-tokens"):
                    budget = int(answer.headers["x-ratelimit-limit-tokens"])
                remaining = answer.headers.get("x-ratelimit-remaining-tokens")
                rows.append(TokenRow(
                    number, answer.headers.get("x-served-by", "?"), answer.status_code,
                    tokens.get("charged"),
                    tokens.get("remaining", int(remaining) if remaining else None),
                    str(body.get("exceeded", "")) if answer.status_code == 429 else "",
                ))
                served = {r.served_by for r in rows if r.status == 200}
                refused = {r.served_by for r in rows if r.exceeded == "tokens"}
                if served and served <= refused:
                    done.set()

        async with asyncio.TaskGroup() as group:
            for n in range(1, requests + 1):
                group.create_task(one(n))
        rows.sort(key=lambda row: row.number)
        billed, source = await _billed(client, base, ledger, rows)
    return TokenResult(rows, budget, billed, source,
                       {r.served_by for r in rows if r.status is not None})


async def _billed(client: httpx.AsyncClient, base: str, ledger: str | None,
                  rows: list[TokenRow]) -> tuple[int, str]:
    """The ledger's prompt + completion tokens for this client, or the answers' charges."""
    try:
        user = _json(await client.get(f"{base}/api/quota")).get("user")
        answer = await client.get(ledger or f"{base}/model/v1/ledger")
        account = _json(answer).get("users", {}).get(user) if answer.status_code == 200 else None
    except httpx.HTTPError:
        account = None
    if isinstance(account, dict):
        return int(account.get("prompt_tokens", 0)) + int(account.get("completion_tokens", 0)), \
            "ledger"
    return sum(row.charged or 0 for row in rows if row.status == 200), "answers"


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class TokenTable(Table):
    COLUMNS = ("request", "served by", "status", "charged", "tokens left")
    WIDTHS = (7, 12, 10, 7, 11)

    def token_row(self, row: TokenRow) -> None:
        if not self.headed:
            self.header()
        status = str(row.status) if row.status is not None else row.error
        if row.exceeded:
            status = f"{status} {row.exceeded}"
        cells = [str(row.number), row.served_by, status,
                 "-" if row.charged is None else str(row.charged),
                 "-" if row.remaining is None else str(row.remaining)]
        padded = [c.ljust(w) for c, w in zip(cells, self.WIDTHS, strict=True)]
        padded[2] = self.paint(padded[2], {200: "32", 429: "33"}.get(row.status or 0, "31"))
        self.out.write("  ".join(padded).rstrip() + "\n")

    def token_verdict(self, result: TokenResult) -> None:
        code = {"enforced": "1;32", "bypassed": "1;31"}.get(result.verdict, "1;33")
        self.out.write(self.paint(result.verdict_line(), code) + "\n")
        if result.source == "answers":
            self.out.write("note: no ledger answered (pass --ledger URL); billed is what the "
                           "answers reported\n")


def main(url: str, *, requests: int = 40, concurrency: int = 1, ledger: str | None = None,
         expect: Verdict | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    table = TokenTable(out)
    try:
        result = asyncio.run(run(url, requests=requests, concurrency=concurrency, ledger=ledger))
    except (ValueError, ExceptionGroup) as exc:
        errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        if not isinstance(errors[0], (ValueError, Unreachable)):
            raise
        print(f"chatlimit compare: {errors[0]}", file=sys.stderr)
        return 1
    for row in result.rows:
        table.token_row(row)
    table.token_verdict(result)
    if expect is not None and result.verdict != expect:
        print(f"chatlimit compare: expected {expect.upper()}, got {result.verdict.upper()}",
              file=sys.stderr)
        return 1
    return 0 if result.verdict != "inconclusive" else 1
