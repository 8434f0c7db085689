"""The scaled topology with the model behind the replicas (`chatlimit cluster`'s LocalStack):
replies stream through nginx event by event (nginx must not buffer SSE), the model's ledger is
readable through nginx, and a client leaving through nginx stops the model."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

import httpx
import pytest

from chatlimit.tools.processes import wait_until
from chatlimit.tools.stack import LocalStack

from .streaming import SSE, events

pytestmark = [pytest.mark.integration, pytest.mark.nginx, pytest.mark.redis]


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., LocalStack]) -> LocalStack:
    return make_cluster(replicas=2, env={"RATE_LIMIT": "100/minute", "MODEL_TOKEN_DELAY_MS": "30"})


def ledger(cluster: LocalStack) -> dict[str, object]:
    answer = httpx.get(f"{cluster.url}/model/v1/ledger", timeout=5)
    assert answer.status_code == HTTPStatus.OK
    data: dict[str, object] = answer.json()
    return data


def test_the_first_event_arrives_through_nginx_before_the_reply_is_complete(
    cluster: LocalStack,
) -> None:
    with httpx.stream("POST", f"{cluster.url}/chat", json={"message": "tell me a story"},
                      headers=SSE, timeout=15) as answer:
        assert answer.status_code == HTTPStatus.OK
        assert answer.headers["x-ratelimit-limit"] == "100"
        received = events(answer)
        assert next(received)[0] == "meta"
        assert next(received)[0] == "delta"
        # Still generating: nginx passed the first events on without waiting for the end.
        assert ledger(cluster)["open_streams"] == 1
        names = [name for name, _ in received]
    assert names[-1] == "done"


def test_the_replicas_bill_the_one_model_and_its_ledger_is_read_through_nginx(
    cluster: LocalStack,
) -> None:
    before = ledger(cluster)["total"]["requests"]  # type: ignore[index]
    served = {httpx.post(f"{cluster.url}/chat", json={"message": "hi"}, timeout=10)
              .headers["x-served-by"] for _ in range(4)}
    assert served == {"app-1", "app-2"}
    assert ledger(cluster)["total"]["requests"] == before + 4  # type: ignore[index]


def test_a_client_leaving_through_nginx_stops_the_model(cluster: LocalStack) -> None:
    with httpx.stream("POST", f"{cluster.url}/chat", json={"message": "tell me a story"},
                      headers=SSE, timeout=15) as answer:
        for n, _ in enumerate(events(answer)):
            if n == 4:
                break
    wait_until(lambda: ledger(cluster)["open_streams"] == 0, timeout=1,
               what="the model to stop generating")
