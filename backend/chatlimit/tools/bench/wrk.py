"""wrk, the load generator of `chatlimit bench`: one POST /chat script and its parsed result."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..processes import find_binary

POST_BODY = '{"message": "hello, how many requests do I have left?"}'
USER_AGENT = "chatlimit-bench/1"

# POST /chat with a fixed User-Agent, so every request is one user's (one storage key).
# done() prints one JSON line: exact percentiles from wrk's own histogram, no text parsing.
POST_CHAT_LUA = r"""
wrk.method = "POST"
wrk.path = "/chat"
wrk.body = '@BODY@'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "@AGENT@"

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

    def run(self, url: str, seconds: float) -> WrkResult:
        argv = [
            self.binary,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(self.script),
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
