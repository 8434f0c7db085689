"""Health, readiness and /api/info."""

from __future__ import annotations

from http import HTTPStatus

from chatlimit.tools.processes import free_port

from ..support import ClientFactory


def test_healthz_answers_without_touching_storage(make_client: ClientFactory) -> None:
    client = make_client(storage_uri=f"redis://127.0.0.1:{free_port()}/0")
    answer = client.get("/healthz")
    assert answer.status_code == HTTPStatus.OK
    assert answer.json() == {"status": "ok", "served_by": "test-1", "storage": None}


def test_readyz_is_ready_with_memory_and_with_a_live_redis(make_client: ClientFactory, redis_url: str) -> None:
    for uri, kind in (("memory://", "memory"), (redis_url, "redis")):
        answer = make_client(storage_uri=uri).get("/readyz")
        assert answer.status_code == HTTPStatus.OK
        assert answer.json() == {"status": "ready", "served_by": "test-1", "storage": kind}


def test_readyz_is_503_when_redis_is_unreachable(make_client: ClientFactory) -> None:
    answer = make_client(storage_uri=f"redis://127.0.0.1:{free_port()}/0").get("/readyz")
    assert answer.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert answer.json()["status"] == "unavailable"


def test_info_describes_the_instance_and_masks_the_password(make_client: ClientFactory) -> None:
    client = make_client(
        storage_uri="redis://:hunter2@127.0.0.1:1/0",
        rate_limit="3/minute;20/hour",
        rate_limit_strategy="moving-window",
        instance_name="app-2",
        replica_names="app-1,app-2,app-3",
    )
    answer = client.get("/api/info")
    assert "hunter2" not in answer.text
    assert answer.json() == {
        "instance": "app-2",
        "mode": "scaled",
        "engine": "chatlimit",
        "replicas": ["app-1", "app-2", "app-3"],
        "storage": {"kind": "redis", "uri": "redis://:***@127.0.0.1:1/0"},
        "strategy": "moving-window",
        "rate_limit": "3/minute;20/hour",
        "limits": ["3 per 1 minute", "20 per 1 hour"],
        "enabled": True,
        "fail_mode": "open",
        "model": {"kind": "demo", "name": "chatlimit-demo", "base_url": "", "max_tokens": 256},
        "tiers": None,
    }


def test_the_page_is_served_as_html(make_client: ClientFactory) -> None:
    answer = make_client().get("/")
    assert answer.status_code == HTTPStatus.OK
    assert answer.headers["content-type"].startswith("text/html")
    assert '<form id="chat-form"' in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]
