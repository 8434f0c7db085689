"""Reading /chat's Server-Sent Events in tests, as the page does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

SSE = {"Accept": "text/event-stream"}


def events(answer: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs as they arrive."""
    name, data = "message", ""
    for line in answer.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


def new_user(ledger: dict[str, Any], before: dict[str, Any]) -> str:
    """The one user the model's ledger learnt about since `before`."""
    (user,) = set(ledger["users"]) - set(before["users"])
    return str(user)
