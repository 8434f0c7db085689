"""chatlimit: a chat app whose /chat endpoint is rate limited with slowapi."""

__version__ = "0.1.0"
