"""The bench's ceiling: a bare FastAPI app with chatlimit's `/chat` contract and no limiter.

What someone would write before adding any rate limiting: the same request and response
models, the same demo reply, one uvicorn worker with the same options as `chatlimit serve`.
Its req/s in the same round says how much of a plain app chatlimit keeps, limiter on or off.

    python -m chatlimit.tools.bench.bare_app --port 8001
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from ...model.conversation import Turn
from ...model.demo import count_tokens, tokens
from ...model.demo import reply_to as demo_reply
from ...web.schemas import ChatRequest, ChatResponse, UsageBody


def create_bare_app(name: str = "bare") -> FastAPI:
    app = FastAPI(title="bare /chat", docs_url=None, redoc_url=None)

    @app.post("/chat")
    async def chat(body: ChatRequest) -> ChatResponse:
        """The demo model's reply, unlimited."""
        text = demo_reply(body.message)
        prompt = count_tokens([Turn("user", body.message)])
        completion = len(tokens(text))
        usage = UsageBody(prompt_tokens=prompt, completion_tokens=completion,
                          total_tokens=prompt + completion, reported=True)
        return ChatResponse(reply=text, served_by=name, quota=None, usage=usage)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_bare_app(), host="127.0.0.1", port=args.port, proxy_headers=False,
                server_header=False, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
