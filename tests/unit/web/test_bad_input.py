"""Bad input gets a 4xx JSON error of one stable shape, never a 500 or a traceback."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from ...support import ClientFactory

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"{not json", JSON, HTTPStatus.BAD_REQUEST, "invalid_json"),
        (b'["hello"]', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b"{}", JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b'{"message": 42}', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b'{"message": null}', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b'{"message": ["a"]}', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b'{"message": ""}', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b'{"message": "   \\n  "}', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b'{"message": "' + b"x" * 2001 + b'"}', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b'{"message": "nul\\u0000byte"}', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
        (b'{"message": "\xff\xfe"}', JSON, HTTPStatus.BAD_REQUEST, "bad_request"),
        (b'{"message": "hi"}', {"Content-Type": "text/plain"}, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (b"message=hi", {"Content-Type": "application/x-www-form-urlencoded"}, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (b'{"message": "hi"}', {}, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (b"x" * 5_000_000, JSON, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large"),
    ],
    ids=[
        "invalid-json", "json-array", "missing-message", "number", "null", "list", "empty",
        "only-whitespace", "2001-characters", "nul-byte", "invalid-utf8", "text-plain", "form",
        "no-content-type", "5-MB-body",
    ],
)
def test_bad_chat_input_is_a_clear_4xx_json_error(
    make_client: ClientFactory, body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    answer = make_client().post("/chat", content=body, headers=headers)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    payload = answer.json()
    assert set(payload) == {"error", "detail"}
    assert payload["error"] == error
    assert isinstance(payload["detail"], str) and payload["detail"]
    assert "Traceback" not in answer.text


def test_2000_characters_after_trimming_are_accepted(make_client: ClientFactory) -> None:
    answer = make_client().post("/chat", json={"message": "  " + "y" * 2000 + "  "})
    assert answer.status_code == HTTPStatus.OK


def test_a_streamed_oversize_body_is_refused(make_client: ClientFactory) -> None:
    def chunks():  # no Content-Length: the cap must count what arrives
        for _ in range(100):
            yield b"x" * 10_000

    answer = make_client().post("/chat", content=chunks(), headers=JSON)
    assert answer.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert answer.json()["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/no/such/page", HTTPStatus.NOT_FOUND, "not_found"),
        ("PUT", "/chat", HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("GET", "/chat", HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("DELETE", "/api/quota", HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed"),
    ],
)
def test_unknown_paths_and_methods_are_json_errors(
    make_client: ClientFactory, method: str, path: str, status: int, error: str
) -> None:
    answer = make_client().request(method, path)
    assert answer.status_code == status
    assert answer.json()["error"] == error
