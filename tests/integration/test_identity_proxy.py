"""Fair identity behind someone else's proxy, through a real nginx that behaves like a Hugging
Face Space's front proxies: each hop appends its peer to X-Forwarded-For.

    client (127.0.0.2, .3, ... or ::1)
      -> edge nginx  (appends the client, connects from 127.0.0.4)
      -> inner nginx (appends 127.0.0.4, connects from 127.0.0.5)
      -> `chatlimit serve` with TRUSTED_PROXIES=127.0.0.4/31

Every client address is a distinct loopback address, bound with httpx's local_address, so
nginx sees (and appends) a different real peer for each simulated user.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from chatlimit.tools.processes import (
    MissingBinary,
    Process,
    find_binary,
    free_port,
    port_open,
    wait_until,
)

from ..support import ServedApp, missing
from ..traffic import chat, codes, send

pytestmark = [pytest.mark.integration, pytest.mark.nginx]

EDGE_HOP, INNER_HOP = "127.0.0.4", "127.0.0.5"
PROXY_FLEET = "127.0.0.4/31"  # a CIDR holding both proxy hops, as 10.0.0.0/8 would on a Space
_client_addresses = (f"127.0.{n // 250}.{10 + n % 250}" for n in itertools.count())


HOP = """
    server {{
        listen {listen};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_bind {bind};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            # What HF's proxies do: append the peer to whatever the client sent.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
"""


def nginx_conf(workdir: Path, servers: str) -> str:
    temp = " ".join(
        f"{kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"worker_processes 1; pid {workdir / 'nginx.pid'}; error_log {workdir / 'error.log'} warn;\n"
        f"events {{ worker_connections 128; }}\n"
        f"http {{ access_log off; {temp}\n{servers}\n}}\n"
    )


@dataclass
class Space:
    """The chain's entry points: the app trusting the proxies, and one that trusts nobody."""

    edge_port: int
    edge_port_v6: int
    untrusting_port: int
    processes: list[ServedApp | Process]


def start_app(workdir: Path, name: str, port: int, trusted: str) -> ServedApp:
    return ServedApp(workdir, name, port=port, STORAGE_URI="memory://", RATE_LIMIT="3/minute",
                     RATE_LIMIT_PER_ADDRESS="10/minute", TRUSTED_PROXIES=trusted).start()


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    try:
        nginx = find_binary("nginx")
    except MissingBinary as exc:
        missing(str(exc))
    workdir = tmp_path_factory.mktemp("hf-proxy")
    app_port, untrusting_app_port = free_port(), free_port()
    edge, edge_v6, inner, untrusting_edge = free_port(), free_port(), free_port(), free_port()
    apps = [
        start_app(workdir, "space", app_port, PROXY_FLEET),
        # The guide's first deploy: the app does not trust the proxy, so every user looks
        # like the proxy's address.
        start_app(workdir, "untrusting", untrusting_app_port, "127.0.0.1"),
    ]
    servers = "".join(
        [
            HOP.format(listen=f"127.0.0.1:{edge}", upstream=inner, bind=EDGE_HOP),
            HOP.format(listen=f"[::1]:{edge_v6}", upstream=inner, bind=EDGE_HOP),
            HOP.format(listen=f"127.0.0.1:{inner}", upstream=app_port, bind=INNER_HOP),
            HOP.format(
                listen=f"127.0.0.1:{untrusting_edge}", upstream=untrusting_app_port, bind=INNER_HOP
            ),
        ]
    )
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(workdir, servers))
    proxy = Process(
        "nginx",
        [nginx, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"],
        workdir / "nginx.log",
    )
    proxy.start()
    processes: list[ServedApp | Process] = [*apps, proxy]
    try:
        for port in (app_port, untrusting_app_port, edge, inner, untrusting_edge):
            wait_until(lambda port=port: port_open(port), what=f"port {port}")
        yield Space(edge, edge_v6, untrusting_edge, processes)
    finally:
        for process in processes:
            process.stop()


Users = Callable[..., httpx.Client]


@pytest.fixture
def user() -> Iterator[Users]:
    """Simulated browsers, each at its own loopback address unless one is given."""
    opened: list[httpx.Client] = []

    def make(local_address: str | None = None) -> httpx.Client:
        address = local_address or next(_client_addresses)
        client = httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def edge(port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}/chat"


def exhaust(port: int, client: httpx.Client, agent: str, host: str = "127.0.0.1") -> None:
    assert codes(send(client, 4, "hi", agent=agent, path=edge(port, host))) == [HTTPStatus.OK] * 3 + [HTTPStatus.TOO_MANY_REQUESTS]


def test_two_users_behind_the_same_proxy_with_different_agents_get_separate_quotas(
    space: Space, user: Users
) -> None:
    shared = user()
    firefox, chrome = f"Firefox {uuid.uuid4()}", f"Chrome {uuid.uuid4()}"
    exhaust(space.edge_port, shared, firefox)
    exhaust(space.edge_port, shared, chrome)


def test_users_at_different_addresses_with_the_same_agent_get_separate_quotas(
    space: Space, user: Users
) -> None:
    agent = f"Safari {uuid.uuid4()}"
    exhaust(space.edge_port, user(), agent)
    exhaust(space.edge_port, user(), agent)


SPOOFS = {
    "one value": "203.0.113.9",
    "several values": "203.0.113.9, 198.51.100.1, 192.0.2.200",
    "ipv6": "2001:db8::dead:beef",
    "ipv6 with port": "[2001:db8::1]:443",
    "garbage": "not-an-address, <script>",
    "a trusted proxy": EDGE_HOP,
    "empty": "",
}


@pytest.mark.parametrize("forwarded", SPOOFS.values(), ids=SPOOFS.keys())
def test_a_client_writing_its_own_x_forwarded_for_gets_no_fresh_quota(
    space: Space, user: Users, forwarded: str
) -> None:
    client, agent = user(), f"curl {uuid.uuid4()}"
    exhaust(space.edge_port, client, agent)
    answer = chat(client, "hi", agent=agent, forwarded=forwarded, path=edge(space.edge_port))
    assert answer.status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_spoofed_headers_and_rotating_agents_still_meet_the_address_ceiling(
    space: Space, user: Users
) -> None:
    client = user()
    codes = [
        chat(client, "hi", agent=f"agent-{n}-{uuid.uuid4()}", forwarded=f"198.51.100.{n}",
             path=edge(space.edge_port)).status_code
        for n in range(12)
    ]
    assert codes == [HTTPStatus.OK] * 10 + [HTTPStatus.TOO_MANY_REQUESTS] * 2


def test_an_ipv6_client_through_the_proxy_is_its_own_user_and_cannot_spoof(
    space: Space, user: Users
) -> None:
    client, agent = user("::1"), f"v6 {uuid.uuid4()}"
    exhaust(space.edge_port_v6, client, agent, host="[::1]")
    again = chat(client, "hi", agent=agent, forwarded="2001:db8::7",
                 path=edge(space.edge_port_v6, "[::1]"))
    assert again.status_code == HTTPStatus.TOO_MANY_REQUESTS
    # The same agent from an IPv4 address is somebody else.
    assert chat(user(), "hi", agent=agent, path=edge(space.edge_port)).status_code == HTTPStatus.OK


def test_without_trusting_the_proxy_everyone_shares_the_proxys_address(
    space: Space, user: Users
) -> None:
    # What the guide's Space first did: the address is the proxy's for every user, so two
    # people with the same browser share one quota.
    agent = f"Edge {uuid.uuid4()}"
    exhaust(space.untrusting_port, user(), agent)
    assert chat(user(), "hi", agent=agent, path=edge(space.untrusting_port)).status_code == HTTPStatus.TOO_MANY_REQUESTS
