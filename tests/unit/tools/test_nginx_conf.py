"""nginx/nginx.conf rendered for loopback: only addresses, listen port and paths change."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from chatlimit.tools.nginx_conf import render, template_text

THREE = {"app-1": "127.0.0.1:9001", "app-2": "127.0.0.1:9002", "app-3": "127.0.0.1:9003"}


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(),
                                                 lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_three_replicas_change_only_server_addresses_listen_port_and_paths() -> None:
    template = template_text()
    rendered = render(template, THREE, 18080, Path("/work/dir"))
    for line in changed_lines(template, rendered):
        body = line[1:]
        assert any(part in body for part in ("app-1:7860", "app-2:7860", "app-3:7860",
                                             "127.0.0.1:900", "listen ", "/tmp/nginx",
                                             "/work/dir/nginx", "model:8001", "127.0.0.1:9;")), line
    assert "listen 127.0.0.1:18080;" in rendered
    assert "pid /work/dir/nginx.pid;" in rendered
    config = "\n".join(line for line in rendered.splitlines() if not line.lstrip().startswith("#"))
    assert "/tmp/" not in config
    assert ":7860" not in config
    assert "user " not in rendered
    assert ":8001" not in config  # no demo model given: the ledger route leads nowhere


def test_the_model_ledger_route_goes_to_the_model_given() -> None:
    rendered = render(template_text(), THREE, 18080, Path("/w"), model="127.0.0.1:48001")
    assert "upstream model { server 127.0.0.1:48001; }" in rendered
    assert "proxy_buffering off;" in rendered  # /chat streams


@pytest.mark.parametrize("count", [1, 2, 5])
def test_upstreams_and_the_replica_route_follow_the_number_of_replicas(count: int) -> None:
    upstreams = {f"app-{i}": f"127.0.0.1:{9000 + i}" for i in range(1, count + 1)}
    rendered = render(template_text(), upstreams, 18080, Path("/w"))
    for name, address in upstreams.items():
        assert f"upstream {name} {{ server {address}; keepalive 4; }}" in rendered
        assert f"server {address} max_fails=3 fail_timeout=5s;" in rendered
    assert rendered.count("max_fails=3") == count
    assert "(" + "|".join(upstreams) + ")" in rendered
    assert f"app-{count + 1}" not in rendered


def test_a_user_directive_is_added_only_when_asked() -> None:
    assert render(template_text(), THREE, 1, Path("/w"), user="root").startswith("user root;\n")


def test_a_template_whose_replica_lines_drifted_apart_is_refused() -> None:
    drifted = template_text().replace("upstream app-2 { server app-2:7860; keepalive 4; }",
                                      "upstream app-2 { server app-2:7860; keepalive 8; }")
    with pytest.raises(ValueError, match="not a copy"):
        render(drifted, THREE, 1, Path("/w"))


@pytest.mark.parametrize("bad", [{"app 1": "127.0.0.1:1"}, {"app-1": "127.0.0.1"}, {}])
def test_bad_names_or_addresses_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        render(template_text(), bad, 1, Path("/w"))


def test_a_workdir_nginx_would_misread_is_refused() -> None:
    with pytest.raises(ValueError, match="workdir"):
        render(template_text(), THREE, 1, Path("/tmp/with space"))
