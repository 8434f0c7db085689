"""The one error shape on every path, the unhandled exception's 500 included."""

from __future__ import annotations

import logging
from http import HTTPStatus

import pytest
from starlette.testclient import TestClient

from chatlimit.app import create_app

from ...support import make_settings

SECURITY_HEADERS = ("x-content-type-options", "referrer-policy", "x-frame-options",
                    "content-security-policy")


def test_a_route_that_raises_answers_500_in_the_error_shape_with_served_by_and_security_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(make_settings(instance_name="app-7"))

    @app.get("/explode")
    async def explode() -> None:
        raise RuntimeError("secret detail of the failure")

    # Starlette's ServerErrorMiddleware would answer outside every user middleware: the 500
    # must come from ours, so no exception reaches the client.
    with TestClient(app, raise_server_exceptions=False) as client, \
            caplog.at_level(logging.ERROR, logger="chatlimit.errors"):
        answer = client.get("/explode")

    assert answer.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert answer.json()["error"] == "internal_error"
    assert answer.headers["x-served-by"] == "app-7"
    for header in SECURITY_HEADERS:
        assert header in answer.headers, header
    assert "secret detail" not in answer.text
    assert any("RuntimeError" in record.getMessage() and record.exc_info
               for record in caplog.records), "the traceback goes to the log"
