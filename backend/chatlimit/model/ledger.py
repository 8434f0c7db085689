"""The demo model's bill: requests and tokens per `user` (the hashed key chatlimit sends)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Account:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Ledger:
    def __init__(self) -> None:
        self.users: dict[str, Account] = {}
        self.total = Account()
        # Streams being generated right now: 0 once every client that went away is let go.
        self.open_streams = 0

    def request(self, user: str, prompt_tokens: int) -> None:
        account = self.users.setdefault(user, Account())
        for entry in (account, self.total):
            entry.requests += 1
            entry.prompt_tokens += prompt_tokens

    def generated(self, user: str, tokens: int) -> None:
        self.users.setdefault(user, Account()).completion_tokens += tokens
        self.total.completion_tokens += tokens

    def as_dict(self) -> dict[str, object]:
        return {"users": {u: asdict(a) for u, a in self.users.items()},
                "total": asdict(self.total), "open_streams": self.open_streams}
