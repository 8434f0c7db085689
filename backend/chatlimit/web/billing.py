"""What a reply is charged against the token budget when it ends, however it ends.

The limiter reserved the prompt's estimate plus max_tokens (limiter/budget.py); here the
reply's end decides the charge, once, for the JSON answer (routes/chat.py) and the stream
(sse.py) alike:

- it ended with the upstream's `usage`: exactly that;
- it ended without usage, or was cut, stopped or abandoned mid-way: the prompt's estimate
  plus the chunks counted, plus CLOSE_ALLOWANCE when the stream was closed under the model,
  which generates on until it notices (at most the reservation);
- it failed before its first token: nothing, unless it timed out (the model may still be
  generating, so the reservation stays charged).
"""

from __future__ import annotations

from typing import Any

from ..limiter.budget import Ask, Ticket
from ..model import Reply, UpstreamError
from ..model.reply import UpstreamTimeout

# Tokens the upstream may generate after chatlimit stopped reading: those already in the
# socket buffers and the one being generated when the close arrives. Measured on the
# invariant run (README "Token budgets"): the ledger never passed the budget with this.
CLOSE_ALLOWANCE = 4


class Bill:
    """Settles one admitted reply's Ticket (a no-op without a budget)."""

    def __init__(self, ticket: Ticket | None, ask: Ask | None) -> None:
        self.ticket = ticket
        self.ask = ask

    def reserved(self, quota: dict[str, int] | None) -> dict[str, Any] | None:
        """The `tokens` of the stream's meta event: what was reserved, and the quota after."""
        if self.ask is None or quota is None:
            return None
        return {"reserved": self.ask.tokens, **quota}

    async def reply_ended(self, reply: Reply, *, complete: bool) -> dict[str, Any] | None:
        """Settle from the reply: `complete` when it ran to its end by itself."""
        if self.ticket is None or self.ask is None:
            return None
        if complete and reply.usage is not None:
            used = reply.usage.total_tokens
        else:
            used = self.ask.prompt + reply.chunks + (0 if complete else CLOSE_ALLOWANCE)
            used = min(used, self.ask.tokens)
        return await self._settle(used)

    async def failed_before_first_token(self, exc: BaseException) -> None:
        if self.ticket is None or self.ask is None:
            return
        # A timeout leaves a model that may still be generating; any other failure (nothing
        # listening, its 429, an error status) generated nothing.
        timed_out = isinstance(exc, UpstreamTimeout) or not isinstance(exc, UpstreamError)
        await self._settle(self.ask.tokens if timed_out else 0)

    async def _settle(self, used: int) -> dict[str, Any] | None:
        assert self.ticket is not None and self.ask is not None
        await self.ticket.settle(used)
        used = self.ticket.used if self.ticket.used is not None else used
        quota = self.ticket.settled_quota()
        settled: dict[str, Any] = {"reserved": self.ask.tokens, "charged": used,
                                   "refunded": max(0, self.ask.tokens - used),
                                   "settled": self.ticket.settled is not None}
        return {**settled, **quota.as_dict()} if quota is not None else settled
