"""The container stand from Python: stand.sh's commands, compose projects, `chatlimit compare`.

stand.sh does the work (podman, stand-in images, the healthcheck loop); this module gives the
tests one object per running compose project, checks the fixed host ports first, and records
how long each step took for the summary line `./scripts/test` prints.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chatlimit.tools.processes import wait_until

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STAND_SH = HERE / "stand.sh"
STAND_DIR = Path(os.environ.get("STAND_DIR", "/var/tmp/chatlimit-stand"))
# Outside STAND_DIR: `stand.sh reset` deletes that directory.
LOCK_PATH = Path(os.environ.get("STAND_LOCK", "/var/tmp/chatlimit-stand.lock"))
# The settings the compose files interpolate; the caller's shell must not leak into a run.
INTERPOLATED = ("STORAGE_URI", "REDIS_URL", "RATE_LIMIT", "RATE_LIMIT_STRATEGY", "FAIL_MODE")

TIMINGS: list[tuple[str, float]] = []
"""(step, seconds) in the order they ran; tests/containers/conftest.py prints them."""


class StandError(RuntimeError):
    """A stand.sh or compose command failed; the message carries its output."""


@contextlib.contextmanager
def timed(step: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((step, time.monotonic() - start))


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise StandError(f"{' '.join(argv)} exited {result.returncode}\n"
                         f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def port_holder(port: int) -> str | None:
    """What listens on a host port the compose files publish, or None if it is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        else:
            return None
    ss = shutil.which("ss")
    listing = run([ss, "-Hltnp", f"sport = :{port}"], check=False).stdout if ss else ""
    return listing.strip() or "an unknown process"


def stand_processes() -> list[str]:
    """Processes the stand started that are still alive: the podman service, the healthloop,
    conmon and aardvark-dns of its containers (all carry STAND_DIR or stand.sh in argv)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(STAND_DIR) in argv or f"{STAND_SH} healthloop" in argv:
            found.append(f"{proc.name} {argv.strip()}")
    return found


@dataclass
class Stand:
    """The podman engine behind a Docker-compatible socket, driven through stand.sh."""

    def sh(self, *args: str, timeout: float = 900) -> str:
        return run([str(STAND_SH), *args], timeout=timeout).stdout

    def podman(self, *args: str) -> list[str]:
        return [line for line in self.sh("podman", *args, timeout=120).splitlines() if line]

    @contextlib.contextmanager
    def exclusive(self, timeout: float = 900) -> Iterator[None]:
        """One test run at a time on this machine: they share the engine and ports 8000/8080."""
        with open(LOCK_PATH, "w") as lock:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StandError(f"another run holds {LOCK_PATH} for {timeout:.0f}s") from None
                    time.sleep(1)  # waiting for another run to finish, not synchronisation
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def prepare(self) -> None:
        with timed("prepare (packages, base, stand-in images)"):
            self.sh("prepare")

    def engine_start(self) -> None:
        with timed("engine start"):
            self.sh("engine-start", timeout=60)

    def engine_stop(self) -> None:
        self.sh("engine-stop", timeout=60)

    def leftovers(self) -> dict[str, list[str]]:
        return {
            "containers": self.podman("ps", "-a", "--format", "{{.Names}}"),
            "pods": self.podman("pod", "ps", "--format", "{{.Name}}"),
            "networks": [n for n in self.podman("network", "ls", "--format", "{{.Name}}")
                         if n != "podman"],  # podman's built-in default network, always there
            "volumes": self.podman("volume", "ls", "--format", "{{.Name}}"),
        }

    def project(self, file: str, name: str, ports: Sequence[int],
                env: dict[str, str] | None = None) -> Project:
        return Project(self, file, name, tuple(ports), dict(env or {}))


@dataclass
class Project:
    """One compose file brought up under its own project name, as a user would."""

    stand: Stand
    file: str
    name: str
    ports: tuple[int, ...]
    env: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, env: dict[str, str] | None = None,
                timeout: float = 900) -> str:
        environ = {k: v for k, v in os.environ.items() if k not in INTERPOLATED}
        environ.update(self.env if env is None else env)
        argv = [str(STAND_SH), "compose", "-f", self.file, "-p", self.name, *args]
        return run(argv, env=environ, timeout=timeout).stdout

    def up(self, env: dict[str, str] | None = None, *, build: bool = False) -> None:
        """`up -d --wait`; with a changed env Compose recreates what it changes."""
        if env is not None:
            self.env = dict(env)
        flags = ["--build"] if build else []
        changed = f" ({' '.join(f'{k}={v}' for k, v in self.env.items())})" if self.env else ""
        with timed(f"{self.file}: up {' '.join(flags)} --wait{changed}".replace("  ", " ")):
            self.compose("up", "-d", *flags, "--wait", "--wait-timeout", "300")
        self.wait_for_names()

    def containers(self) -> dict[str, str]:
        """Running container name -> its compose service."""
        rows = self.stand.podman(
            "ps", "--filter", f"label=com.docker.compose.project={self.name}",
            "--format", '{{.Names}} {{index .Labels "com.docker.compose.service"}}')
        return dict(row.split(" ", 1) for row in rows)

    def wait_for_names(self, timeout: float = 180) -> None:
        """Every container resolves every service name at once, before a test sends traffic.

        Healthy is not enough here: right after `up`, aardvark-dns (Debian 12's 1.4) has been
        seen to leave one container's lookups unanswered for about 40 s, then "Temporary
        failure in name resolution" (cause not pinned down), so a replica's first call to
        `model` outlived the client's timeout (tests/containers/README.md, trap 16).
        Docker's embedded DNS answers from the first packet; the wait makes the stand do too,
        and its timing line shows how long it took."""
        containers = self.containers()
        names = " ".join(sorted(set(containers.values())))
        script = ('for n in ' + names + '; do timeout 2 getent hosts "$n" >/dev/null '
                  '|| { echo "$n"; exit 1; }; done')
        pending = list(containers)

        def resolved() -> bool:
            pending[:] = [c for c in pending if run(
                [str(STAND_SH), "podman", "exec", c, "sh", "-c", script],
                check=False, timeout=60).returncode != 0]
            return not pending

        with timed(f"{self.file}: names resolve in {len(containers)} containers"):
            try:
                wait_until(resolved, timeout=timeout, interval=1,
                           what="every container to resolve the service names")
            except TimeoutError:
                raise StandError(f"after {timeout:.0f} s these containers still cannot resolve "
                                 f"the service names ({names}): {', '.join(pending)}") from None

    def down(self, *, volumes: bool) -> None:
        with timed(f"{self.file}: down" + (" -v" if volumes else "")):
            self.compose("down", "--remove-orphans", *(["-v"] if volumes else []), timeout=120)

    def check_ports(self) -> None:
        for port in self.ports:
            holder = port_holder(port)
            if holder is not None:
                raise StandError(
                    f"host port {port}, which {self.file} publishes, is taken by: {holder}. "
                    "Stop that process (or the compose project using it) and run again.")

    def exec(self, service: str, *argv: str) -> str:
        return self.compose("exec", "-T", service, *argv, timeout=60).strip()

    @contextlib.contextmanager
    def running(self) -> Iterator[Project]:
        """Up with --build --wait; always down -v afterwards, even when up failed halfway."""
        self.check_ports()
        try:
            self.up(build=True)
            yield self
        finally:
            self.down(volumes=True)


@dataclass(frozen=True)
class Comparison:
    """What `chatlimit compare` printed: the table rows and the verdict line."""

    returncode: int
    output: str

    @property
    def verdict(self) -> str:
        lines = re.findall(r"^(?:ENFORCED|BYPASSED|INCONCLUSIVE):.*$", self.output, re.M)
        return lines[-1] if lines else f"no verdict line in:\n{self.output}"

    @property
    def served_by(self) -> set[str]:
        """The X-Served-By column of the answered rows (200 or 429)."""
        return {m[0] for m in re.findall(r"^\s*\d+\s+(\S+)\s+(200|429)\b", self.output, re.M)}


def compare(url: str, *, requests: int, expect: str, tokens: bool = False) -> Comparison:
    argv = [sys.executable, "-m", "chatlimit", "compare", url, "--requests", str(requests),
            "--expect", expect, *(["--tokens"] if tokens else [])]
    with timed(f"chatlimit compare {url} --requests {requests}{' --tokens' * tokens}"):
        result = run(argv, timeout=120, check=False, env={**os.environ, "NO_COLOR": "1"})
    return Comparison(result.returncode, result.stdout + result.stderr)


def wait_for_no_stand_processes(timeout: float = 30) -> list[str]:
    """conmon of an exec session (each healthcheck) lingers for exit_command_delay (10 s)."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not stand_processes(), timeout=timeout, interval=0.5,
                   what="the stand's processes to exit")
    return stand_processes()
