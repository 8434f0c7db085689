"""The demo model: deterministic replies, cut into word tokens. No network, no model download.

The same answers come from the in-process model (LLM_BASE_URL empty) and from `chatlimit
model`, so the page, the tests and the scaled stand see one behaviour. A token is a word with
its trailing space: easy to count on both sides, and it streams visibly word by word.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .conversation import Turn

_TOPICS: list[tuple[tuple[str, ...], str]] = [
    (("hello", "hi", "hey", "good morning", "good evening"),
     "Hello! I'm the chatlimit demo bot. Every message you send costs one request from your quota."),
    (("redis",),
     "Redis keeps one shared counter per user, so every replica sees the same count and the limit holds."),
    (("memory", "in-memory"),
     "In-memory counting is perfect for one process. Put three replicas behind a load balancer and each counts alone."),
    (("limit", "quota", "rate"),
     "Your quota is shown above the chat. When it runs out you'll get a 429 with a countdown until it resets."),
    (("replica", "scale", "nginx", "load balancer"),
     "The badge on each reply names the replica that answered. Behind nginx, consecutive messages rotate between them."),
    (("help", "what can you do"),
     "Ask me about rate limits, Redis or replicas, ask me to tell you a story for a long streamed answer, or press Burst to fire many requests at once."),
    (("thanks", "thank you"),
     "You're welcome! Spend your remaining requests wisely."),
]

# A long answer, so streaming, Stop and the token bill have something to show. Longer than the
# default LLM_MAX_TOKENS (256 words), so it also ends with finish_reason "length".
STORY = " ".join([
    "Once upon a time, in a data centre humming beside a cold river, there lived a small chat",
    "service called chatlimit. Every morning the users arrived, first a few and then a crowd,",
    "and every one of them wanted to talk to the model that lived behind it. The model was",
    "clever and patient, but it was also expensive: each word it spoke was a token, and each",
    "token was written into a ledger that somebody, at the end of the month, had to pay.",
    "So chatlimit kept a counter for every user. When a user had spoken too often, it said,",
    "kindly but firmly, that they should wait until the window turned over, and it told them",
    "exactly how many seconds that would take. For a while this worked beautifully. Then the",
    "service grew popular, and its keepers did what keepers do: they started two more copies",
    "of it behind a load balancer called nginx, so that nobody would have to wait for an",
    "answer. But each copy kept its counters in its own memory, and none of them knew what",
    "the others had counted. A clever user noticed that their messages went round the three",
    "copies in turn, and that each copy let them speak three times. Nine messages instead of",
    "three! The ledger grew and grew, and the keepers, reading it, could not understand why",
    "their limit had failed them. An old engineer listened to the story, smiled, and drew a",
    "single box on the whiteboard. She wrote the word Redis inside it and connected all three",
    "copies to the box with straight lines. From now on, she said, every copy asks the same",
    "counter, and the counter answers them one at a time, atomically, so two copies can never",
    "both let the same message through. The keepers tried it. The clever user sent nine",
    "messages again, and this time only three were answered; the others came back with a",
    "polite four hundred and twenty nine and a countdown. The ledger grew only as fast as the",
    "budget allowed, the bill at the end of the month was exactly what everyone expected, and",
    "the model, which had never minded talking, was glad to be asked only as often as it",
    "could afford. The keepers wrote the lesson down so that nobody would forget it: a limit",
    "counted in many places is many limits, and a limit counted in one place is one. And the",
    "small chat service hummed on beside the cold river, answering everyone in turn, fairly,",
    "for many years to come. The end.",
])

# A drill for the failure path: the demo model breaks off after a few words, as an upstream
# whose connection drops mid-reply would (the page marks the partial reply as cut).
CUT_PROMPT = "simulate a cut"
CUT_TEXT = "This reply will break off in the middle of a sentence, as if the model's connection"
CUT_AFTER = 6

_FALLBACKS = [
    "Interesting! You said: “{echo}”. That message used one request of your quota.",
    "Got it: “{echo}”. Try sending a few quickly to watch the limiter step in.",
    "“{echo}”, noted. Which replica answered? Check the badge.",
    "I hear you: “{echo}”. Ask me about Redis to learn why shared counters matter.",
]

_TOKEN = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class Answer:
    tokens: tuple[str, ...]
    finish_reason: str  # "stop" or "length", as OpenAI reports it
    cut_after: int | None = None  # break off after this many tokens (the drill)


def tokens(text: str) -> list[str]:
    """Word tokens, each with its trailing whitespace, so joining them gives the text back."""
    return _TOKEN.findall(text)


def count_tokens(turns: Sequence[Turn]) -> int:
    """Prompt tokens as the demo model counts them: the words of every turn."""
    return sum(len(tokens(turn.content)) for turn in turns)


def reply_to(message: str) -> str:
    """A friendly reply that depends only on the message, so tests and demos are repeatable."""
    lowered = message.lower()
    if "story" in lowered:
        return STORY
    if CUT_PROMPT in lowered:
        return CUT_TEXT
    for keywords, answer in _TOPICS:
        if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in keywords):
            return answer
    echo = message if len(message) <= 80 else message[:77] + "..."
    digest = hashlib.blake2b(message.encode(), digest_size=2).digest()
    return _FALLBACKS[digest[0] % len(_FALLBACKS)].format(echo=echo)


def answer(turns: Sequence[Turn], max_tokens: int) -> Answer:
    """The demo model's answer to a conversation: a reply to its last user turn."""
    last = next((t.content for t in reversed(turns) if t.role == "user"), "")
    words = tokens(reply_to(last))
    cut_after = CUT_AFTER if CUT_PROMPT in last.lower() else None
    if len(words) > max_tokens:
        return Answer(tuple(words[:max_tokens]), "length", cut_after)
    return Answer(tuple(words), "stop", cut_after)
