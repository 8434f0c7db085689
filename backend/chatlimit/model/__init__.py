"""The model behind /chat: the seam that calls it (backends.py), a reply in flight and the
upstream's failures (reply.py), what is sent (conversation.py), the deterministic demo model
(demo.py) and `chatlimit model`, the demo model as an OpenAI-compatible server (server.py)."""

from __future__ import annotations

from .backends import ChatModel, model_for
from .conversation import Turn, conversation
from .reply import Reply, UpstreamError, Usage

__all__ = ["ChatModel", "Reply", "Turn", "UpstreamError", "Usage", "conversation", "model_for"]
