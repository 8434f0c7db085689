"""The chat partner: a deterministic local responder. No network, no model download."""

from __future__ import annotations

import hashlib
import re

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
     "Ask me about rate limits, Redis or replicas, or press Burst to fire many requests at once."),
    (("thanks", "thank you"),
     "You're welcome! Spend your remaining requests wisely."),
]

_FALLBACKS = [
    "Interesting! You said: “{echo}”. That message used one request of your quota.",
    "Got it: “{echo}”. Try sending a few quickly to watch the limiter step in.",
    "“{echo}”, noted. Which replica answered? Check the badge.",
    "I hear you: “{echo}”. Ask me about Redis to learn why shared counters matter.",
]


def reply_to(message: str) -> str:
    """A friendly reply that depends only on the message, so tests and demos are repeatable."""
    lowered = message.lower()
    for keywords, answer in _TOPICS:
        if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in keywords):
            return answer
    echo = message if len(message) <= 80 else message[:77] + "..."
    digest = hashlib.blake2b(message.encode(), digest_size=2).digest()
    return _FALLBACKS[digest[0] % len(_FALLBACKS)].format(echo=echo)
