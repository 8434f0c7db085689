"""What is sent to the model: the system prompt, the last few turns the page sent, the message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]
# The longest earlier turn forwarded, in characters (a message is at most 2000 already).
TURN_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    content: str

    def as_message(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def conversation(
    message: str, history: Sequence[Turn], *, system_prompt: str, max_turns: int
) -> list[Turn]:
    """The turns forwarded upstream. The page sends its recent history, but the server decides
    how much of it the model sees (LLM_CONTEXT_TURNS): a client cannot make one message cost a
    whole transcript of prompt tokens, nor pass off a system prompt of its own."""
    turns = [Turn("system", system_prompt)] if system_prompt else []
    recent = [Turn(t.role, t.content[:TURN_CHARS]) for t in history
              if t.role != "system"][-max_turns:] if max_turns else []
    return [*turns, *recent, Turn("user", message)]


# OpenAI's rule of thumb for English text; the rate limit "is calculated as the maximum of
# max_tokens and the estimated number of tokens based on the character count of your request".
CHARS_PER_TOKEN = 4


def estimate_tokens(turns: Sequence[Turn]) -> int:
    """The prompt's tokens as reserved before the model is called: per turn, the larger of a
    character estimate and its words (what the demo model and `chatlimit model` count), so the
    estimate never falls short of what the demo model bills."""
    return sum(max(-(-len(t.content) // CHARS_PER_TOKEN), len(t.content.split())) for t in turns)
