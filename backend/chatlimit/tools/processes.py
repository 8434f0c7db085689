"""Real server processes on loopback: free ports, readiness polling, a redis-server, and the
one way a `chatlimit` command is spawned (`chatlimit_argv`, ServedApp for `chatlimit serve`).

Used by `chatlimit cluster`, `chatlimit bench` and the test fixtures alike, so what users
run is what is tested.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_HINTS = {
    "redis-server": "install it with: sudo apt-get install redis-server",
    "nginx": "install it with: sudo apt-get install nginx-light",
    "wrk": "install it with: sudo apt-get install wrk",
    "prometheus": "install it with: sudo apt-get install prometheus",
}


class MissingBinary(RuntimeError):
    """A server binary is not installed; the message says how to install it."""


def find_binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        hint = INSTALL_HINTS.get(name, f"install {name}")
        raise MissingBinary(f"{name} not found: {hint}")
    return found


# Ports below this are left to services people run (8000, 8080, 6379...).
PORT_FLOOR = 15000
_handed_out: set[int] = set()
_random = random.Random()  # its own: a test seeding the module's must not make picks repeat


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default if unread)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port nothing listens on, for a server about to start.

    CI once saw nginx refused ("Address already in use") the port a test had picked a second
    before with bind(0). Two things can take such a port before its server binds it: another
    bind(0) (chatlimit cluster picking its Redis nodes' ports), and an outgoing connection
    (a Redis client, a cluster node dialling another), whose local port comes from the same
    ephemeral range. So the pick is below that range, at random (two processes picking at
    once rarely meet), and never twice in one process; claim() keeps a given --port out."""
    low, _ = ephemeral_range()
    if low - PORT_FLOOR < 1000:  # an unusual range leaves no room below it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(200):
        port = _random.randrange(PORT_FLOOR, low)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port between {PORT_FLOOR} and {low}")


def wait_until(
    ready: Callable[[], bool], *, timeout: float = 60.0, interval: float = 0.02, what: str = "it"
) -> None:
    """Poll `ready` until it is true; a readiness check, not a sleep. The timeout only bounds a
    failure: on a loaded 2-core machine (CI beside other jobs) a start-up can take 20 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def claim(*ports: int) -> None:
    """Ports this process was told to use (`--port`): free_port never hands them out, so a
    Redis node started before nginx cannot take nginx's port (CI saw that once)."""
    _handed_out.update(ports)


def port_holder(port: int, host: str = "127.0.0.1") -> str | None:
    """Who already listens on host:port ("nginx (pid 812)", or "another process" when /proc
    does not say), or None when the port can be bound. Asked before anything starts, so a taken
    port is one line instead of a server that dies after another one answered its health check."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn and nginx bind: a port left in TIME_WAIT is free, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            pass
        else:
            return None
    return _listener_name(port) or "another process"


def _listener_name(port: int) -> str | None:
    """The process listening on a TCP port, from /proc (Linux; only processes we may read)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    name = (proc / "comm").read_text().strip()
                    return f"{name} (pid {proc.name})"
    return None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def _term_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when the thread that started it dies, even by
    SIGKILL (Linux PR_SET_PDEATHSIG), so a killed launcher leaves no orphans behind."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class Process:
    """A child process with its log file, stopped with SIGTERM then SIGKILL.

    die_with_parent: SIGTERM the child if this process dies without stopping it (Linux only;
    start it from a thread that lives as long as the child should).
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    die_with_parent: bool = False
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        preexec = (_term_with_parent(os.getpid())
                   if self.die_with_parent and sys.platform == "linux" else None)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                cwd=self.cwd, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=preexec,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class RedisServer:
    """A real redis-server on a free loopback port with its own data directory."""

    def __init__(
        self, workdir: Path, *, port: int | None = None, appendonly: bool = False,
        extra_args: Sequence[str] = (), name: str = "redis",
    ) -> None:
        self.binary = find_binary("redis-server")
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.dir = workdir / f"{name}-data"
        self.process = Process(name, self._argv(), workdir / f"{name}.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no", "--protected-mode", "no", "--logfile", "",
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process.argv = self._argv()
        self.process.start()
        try:
            wait_until(self.ping, timeout=timeout, what=f"redis-server on port {self.port}")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.process.log_tail()}") from None
        return self

    def ping(self) -> bool:
        try:
            return self.command("PING") == "+PONG"
        except OSError:
            return False

    def command(self, *args: str, timeout: float = 2.0) -> str:
        """One command over a plain socket (RESP); returns the first reply line."""
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(payload.encode())
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply.decode(errors="replace").split("\r\n", 1)[0]

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def chatlimit_argv(*args: str) -> list[str]:
    """A `chatlimit` subcommand run by this very interpreter (and so this very install)."""
    return [sys.executable, "-m", "chatlimit", *args]


# Variables of the parent that must not leak into a spawned app: its storage is set explicitly.
_STORAGE_VARIABLES = ("REDIS_URL", "STORAGE_URI")


class ServedApp:
    """`chatlimit serve` on a free loopback port with the given environment; its log captured.
    Ready when /healthz answers; an exit during start-up raises with the log."""

    def __init__(
        self, workdir: Path, name: str = "app", *, port: int | None = None,
        inherit: bool = True, die_with_parent: bool = False, **env: str,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if k not in _STORAGE_VARIABLES} \
            if inherit else {"PATH": os.environ.get("PATH", "")}
        environ.update({"INSTANCE_NAME": name, "PORT": str(self.port), "HOST": "127.0.0.1"})
        environ.update({k.upper(): v for k, v in env.items()})
        self.env = environ
        self.process = Process(
            name, chatlimit_argv("serve"), workdir / f"{name}.log", env=environ, cwd=workdir,
            die_with_parent=die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = 60.0, ready_path: str = "/healthz") -> ServedApp:
        self.process.start()
        try:
            wait_until(lambda: self._ready(ready_path), timeout=timeout,
                       what=f"chatlimit serve ({self.name}) on {self.port}")
        except BaseException:
            self.process.stop()  # a failed start leaves no child behind for a later test
            raise
        return self

    def _ready(self, path: str) -> bool:
        if not self.process.alive():
            raise RuntimeError(f"chatlimit serve ({self.name}) exited:\n{self.log}")
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=1) as answer:
                return int(answer.status) == 200
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process.alive()

    @property
    def log(self) -> str:
        try:
            return self.process.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def terminate(self) -> None:
        self.process.signal(signal.SIGTERM)

    def stop(self) -> int | None:
        return self.process.stop(timeout=15)

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ModelServer:
    """`chatlimit model` (the demo model, OpenAI-compatible) on a free loopback port.
    Ready when /v1/models answers; `api_url` is what LLM_BASE_URL takes."""

    def __init__(
        self, workdir: Path, name: str = "model", *, port: int | None = None,
        die_with_parent: bool = False, **env: str,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/v1"
        environ = dict(os.environ)
        environ.update({k.upper(): v for k, v in env.items()})
        self.process = Process(
            name, chatlimit_argv("model", "--host", "127.0.0.1", "--port", str(self.port)),
            workdir / f"{name}.log", env=environ, cwd=workdir, die_with_parent=die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = 30.0) -> ModelServer:
        self.process.start()
        wait_until(self._ready, timeout=timeout, what=f"chatlimit model on {self.port}")
        return self

    def _ready(self) -> bool:
        if not self.process.alive():
            raise RuntimeError(f"chatlimit model exited:\n{self.process.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.api_url}/models", timeout=1) as answer:
                return int(answer.status) == 200
        except OSError:
            return False

    def ledger(self) -> dict[str, Any]:
        """GET /v1/ledger: the tokens generated per user."""
        with urllib.request.urlopen(f"{self.api_url}/ledger", timeout=5) as answer:
            data: dict[str, Any] = json.load(answer)
            return data

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self) -> int | None:
        self.process.signal(signal.SIGCONT)  # a frozen server would ignore SIGTERM
        return self.process.stop(timeout=10)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
