"""nginx/nginx.conf rendered for processes on loopback (`chatlimit cluster`, tests, benchmark).

The compose file mounts nginx/nginx.conf as it is; here the same text gets only the replica
addresses, the listen port and the /tmp/nginx* file paths substituted, so what runs without
Docker is the config that runs with it. The template spells three replicas (app-1..app-3); a
line naming app-1 is the pattern for every replica, and the app-2/app-3 lines must be its copies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

TEMPLATE_NAMES = ("app-1", "app-2", "app-3")
TEMPLATE_PORT = 7860
LISTEN = "listen 8080;"
MODEL = "server model:8001;"
# Where the ledger route goes when no demo model runs (LLM_BASE_URL elsewhere): nothing
# listens there, so it answers nginx's 502 JSON rather than failing nginx's start-up.
NO_MODEL = "127.0.0.1:9"
PATH_PREFIX = "/tmp/nginx"

_ALTERNATION = "(" + "|".join(TEMPLATE_NAMES) + ")"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ADDRESS = re.compile(r"[A-Za-z0-9_.-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}")
_ANY_TEMPLATE_NAME = re.compile(r"\bapp-\d+\b")
# Characters nginx would read as syntax in an unquoted path.
_SAFE_DIR = re.compile(r"[^\s;{}'\"#$\\]+")


def template_text() -> str:
    """nginx/nginx.conf, shipped in the package as chatlimit.nginx (works from a wheel too)."""
    return resources.files("chatlimit.nginx").joinpath("nginx.conf").read_text(encoding="utf-8")


def render(
    template: str,
    upstreams: Mapping[str, str],
    listen_port: int,
    workdir: Path,
    *,
    listen_host: str = "127.0.0.1",
    user: str | None = None,
    model: str | None = None,
) -> str:
    """The template with replicas `upstreams` ({name: "host:port"}), listening on
    listen_host:listen_port, keeping its pid and temp files under `workdir`.

    `model` is the demo model's host:port (the ledger route). `user` adds a `user` directive
    (only this rendered copy): nginx started as root switches
    its workers to `nobody`, who cannot enter a private workdir for request-body temp files.
    """
    if not upstreams:
        raise ValueError("at least one replica is needed")
    for name, address in upstreams.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"replica name {name!r}: use letters, digits, '_' or '-'")
        if not _ADDRESS.fullmatch(address):
            raise ValueError(f"replica address {address!r}: use host:port")
    directory = str(workdir)
    if not _SAFE_DIR.fullmatch(directory):
        raise ValueError(f"workdir {directory!r} contains characters nginx cannot take unquoted")

    text = _expand_replicas(template, upstreams)
    text = _replace_once(text, LISTEN, f"listen {listen_host}:{listen_port};")
    if model is not None and not _ADDRESS.fullmatch(model):
        raise ValueError(f"model address {model!r}: use host:port")
    text = _replace_once(text, MODEL, f"server {model or NO_MODEL};")
    if PATH_PREFIX not in text:
        raise ValueError(f"template has no {PATH_PREFIX}* paths to move")
    text = text.replace(PATH_PREFIX, f"{directory.rstrip('/')}/nginx")
    if user is not None:
        text = f"user {user};\n{text}"
    return text


def _expand_replicas(template: str, upstreams: Mapping[str, str]) -> str:
    first = TEMPLATE_NAMES[0]
    lines = template.splitlines(keepends=True)
    patterns = {line for line in lines if _is_config(line) and first in line}
    out: list[str] = []
    for line in lines:
        if not _is_config(line):
            out.append(line)
        elif _ALTERNATION in line:
            out.append(line.replace(_ALTERNATION, "(" + "|".join(upstreams) + ")"))
        elif first in line:
            for name, address in upstreams.items():
                out.append(line.replace(f"{first}:{TEMPLATE_PORT}", address).replace(first, name))
        elif any(name in line for name in TEMPLATE_NAMES[1:]):
            # A copy of an app-1 line: dropped, the app-1 line above stands for every replica.
            pattern = line
            for name in TEMPLATE_NAMES[1:]:
                pattern = pattern.replace(name, first)
            if pattern not in patterns:
                raise ValueError(f"template line is not a copy of an {first} line: {line.strip()}")
        else:
            out.append(line)
    text = "".join(out)
    if not patterns:
        raise ValueError(f"template names no {first} upstream")
    leftover = [m for line in text.splitlines() if _is_config(line)
                for m in _ANY_TEMPLATE_NAME.findall(line) if m not in upstreams]
    if leftover:
        raise ValueError(f"template still names {sorted(set(leftover))} after rendering")
    return text


def _is_config(line: str) -> bool:
    return not line.lstrip().startswith("#")


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"template must contain {old!r} exactly once")
    return text.replace(old, new)
