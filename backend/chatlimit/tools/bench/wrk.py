"""wrk, the load generator of `chatlimit bench`: one POST /chat script and its parsed result."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..processes import find_binary

POST_BODY = '{"message": "hello, how many requests do I have left?"}'
USER_AGENT = "chatlimit-bench/1"

# done() prints one JSON line: exact percentiles from wrk's own histogram, no text parsing.
DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'CHATLIMIT_WRK {"requests": %d, "duration_us": %d, "bytes": %d, '
    .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
    .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""

# POST /chat with a fixed User-Agent, so every request is one user's (one storage key).
POST_CHAT_LUA = r"""
wrk.method = "POST"
wrk.path = "/chat"
wrk.body = '@BODY@'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "@AGENT@"
""" + DONE_LUA

# POST /chat as @USERS@ users in turn (from user @OFFSET@ on): user i has its own User-Agent
# and its own address 10.x.y.z in X-Forwarded-For, which the app believes because wrk's peer,
# 127.0.0.1, is a trusted proxy by default (TRUSTED_PROXIES). A user and an address each: two
# storage keys per user (its own limit and its address's ceiling). One wrk thread, so one
# counter walks the users in order. wrk.format per request costs wrk some CPU, so the
# one-user point of the curve runs this same script with @USERS@ = 1.
USERS_LUA = r"""
local users, i = @USERS@, @OFFSET@
local headers = {["Content-Type"] = "application/json"}
local body = '@BODY@'

request = function()
  local u = i % users
  i = i + 1
  headers["User-Agent"] = "bench-user-" .. u
  headers["X-Forwarded-For"] = string.format("10.%d.%d.%d",
    math.floor(u / 65536) % 256, math.floor(u / 256) % 256, u % 256)
  return wrk.format("POST", "/chat", headers, body)
end
""" + DONE_LUA


def user_headers(user: int) -> dict[str, str]:
    """What USERS_LUA sends as user `user`: the same identity, for checks from Python."""
    address = f"10.{user // 65536 % 256}.{user // 256 % 256}.{user % 256}"
    return {"User-Agent": f"bench-user-{user}", "X-Forwarded-For": address}

MARKER = "CHATLIMIT_WRK "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def parse(output: str) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
    raw = json.loads(line[len(MARKER) :])
    errors, latency = raw["errors"], raw["latency_us"]
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        non_2xx=errors["status"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        mean_ms=latency["mean"] / 1000,
    )


class Wrk:
    """Runs wrk with one thread and a fixed number of keep-alive connections."""

    def __init__(self, workdir: Path, *, connections: int = 32, threads: int = 1) -> None:
        self.binary = find_binary("wrk")
        self.connections = connections
        self.threads = threads
        self.script = workdir / "post_chat.lua"
        self.script.write_text(
            POST_CHAT_LUA.replace("@BODY@", POST_BODY).replace("@AGENT@", USER_AGENT)
        )

    def users_script(self, users: int, offset: int = 0) -> Path:
        """A script for `users` distinct users in turn, starting with user `offset`."""
        path = self.script.with_name(f"users_{users}_{offset}.lua")
        path.write_text(
            USERS_LUA.replace("@USERS@", str(users)).replace("@OFFSET@", str(offset))
            .replace("@BODY@", POST_BODY)
        )
        return path

    def run(self, url: str, seconds: float, script: Path | None = None) -> WrkResult:
        argv = [
            self.binary,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(script or self.script),
            url,
        ]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return parse(done.stdout)

    def version(self) -> str:
        done = subprocess.run([self.binary, "-v"], capture_output=True, text=True, check=False)
        first = (done.stdout or done.stderr).strip().splitlines()
        return first[0].split(" [")[0] if first else "unknown"
