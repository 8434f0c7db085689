"""A real `chatlimit serve` process (uvicorn) on a free loopback port, for the failure tests:
stalls, signals and logs only show up in a real server, not in an in-process TestClient."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx

from chatlimit.tools.processes import Process, free_port, wait_until


class ServedApp:
    """`python -m chatlimit serve` with the given environment; its log is captured."""

    def __init__(self, workdir: Path, name: str = "app", **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "STORAGE_URI")}
        environ.update({"INSTANCE_NAME": name, "PORT": str(self.port), "HOST": "127.0.0.1"})
        environ.update({k.upper(): v for k, v in env.items()})
        self.process = Process(
            name, [sys.executable, "-m", "chatlimit", "serve"], workdir / f"{name}.log", env=environ,
            cwd=workdir,
        )

    def start(self) -> ServedApp:
        self.process.start()
        wait_until(self._healthy, timeout=30, what=f"chatlimit serve on {self.port}")
        return self

    def _healthy(self) -> bool:
        if not self.process.alive():
            raise RuntimeError(f"chatlimit serve exited:\n{self.log}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        self.process.signal(signal.SIGTERM)

    def stop(self) -> int | None:
        return self.process.stop(timeout=15)

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
