"""LLM_API_KEY never leaves the process: not in logs (debug level, access log on), /api/info,
the page, JSON or streamed answers, or error bodies; with the model up and with it gone."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from chatlimit.tools.processes import ModelServer, ServedApp

from .streaming import SSE
from .test_secrets import everything_a_client_can_see

KEY = "sk-test-" + secrets.token_hex(16)


def test_the_api_key_never_appears_in_responses_or_logs(tmp_path: Path) -> None:
    with ModelServer(tmp_path, MODEL_TOKEN_DELAY_MS="0") as model, ServedApp(
        tmp_path, LLM_BASE_URL=model.api_url, LLM_API_KEY=KEY, LLM_MODEL="chatlimit-demo",
        LOG_LEVEL="debug", ACCESS_LOG="true", RATE_LIMIT="100/minute",
    ) as app:
        seen = everything_a_client_can_see(app)
        streamed = httpx.post(f"{app.url}/chat", json={"message": "hi"}, headers=SSE, timeout=10)
        info = httpx.get(f"{app.url}/api/info", timeout=5).json()
        model.stop()  # and while the model is gone
        gone = httpx.post(f"{app.url}/chat", json={"message": "hi"}, timeout=10)
        seen += f"{streamed.headers!r}{streamed.text}{gone.headers!r}{gone.text}"
        log = app.log
    assert info["model"] == {"kind": "openai-compatible", "name": "chatlimit-demo",
                             "base_url": model.api_url, "max_tokens": 256}
    assert "event: done" in streamed.text and gone.json()["error"] == "upstream_unavailable"
    assert KEY not in seen
    assert KEY not in log
    assert "model: chatlimit-demo at http://127.0.0.1" in log
