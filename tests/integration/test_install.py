"""`pip install .` without extras, as the Docker image does: the app serves from the installed
wheel (templates, static files and Lua from package data, any working directory), and the
tools' commands say in one line how to get them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

from chatlimit.tools.processes import Process, free_port, wait_until

from ..support import ROOT, missing

pytestmark = pytest.mark.integration

# What the wheel is built from; copied, so the build writes nothing into the checkout.
SOURCES = ("pyproject.toml", "README.md", "backend", "frontend", "nginx")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with chatlimit installed from a copy of the checkout, no extras; the
    dependencies at the versions requirements.txt pins (the suite's), from pip's cache when
    it has them."""
    work = tmp_path_factory.mktemp("install")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    # requirements.txt as constraints (which take no extras): the versions the suite runs.
    constraints = work / "constraints.txt"
    constraints.write_text(re.sub(r"\[[^\]]*\]", "", (ROOT / "requirements.txt").read_text()))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(constraints), str(source)],
        capture_output=True, text=True, timeout=1200,
    )
    if done.returncode != 0:
        if "No matching distribution" in done.stderr or "NewConnectionError" in done.stderr:
            missing(f"pip could not reach an index for chatlimit's dependencies:\n{done.stderr[-800:]}")
        pytest.fail(f"pip install . failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    yield venv


def test_the_install_without_extras_has_no_tools_dependencies(installed: Path) -> None:
    probe = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import importlib.util as u; print(u.find_spec('matplotlib') is None)"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert probe.stdout.strip() == "True"


@pytest.mark.parametrize("command", ["bench", "cluster", "compare"])
def test_a_tools_command_without_the_extra_prints_the_install_hint(
    installed: Path, tmp_path: Path, command: str
) -> None:
    run = subprocess.run([str(installed / "bin" / "chatlimit"), command, "--quick"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f"chatlimit {command} needs the tools extra: pip install 'chatlimit[tools]'")
    assert "Traceback" not in run.stdout + run.stderr


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return int(answer.status), answer.read()


def test_the_installed_app_serves_the_page_and_the_chat_from_any_folder(
    installed: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_URI", "REDIS_URL")}
    env.update({"PORT": str(port), "HOST": "127.0.0.1", "INSTANCE_NAME": "installed"})
    app = Process("installed", [str(installed / "bin" / "chatlimit"), "serve"],
                  tmp_path / "serve.log", env=env, cwd=tmp_path)
    app.start()
    try:
        def ready() -> bool:
            if not app.alive():
                raise RuntimeError(f"chatlimit serve exited:\n{app.log_tail()}")
            try:
                return get(f"http://127.0.0.1:{port}/healthz")[0] == HTTPStatus.OK
            except OSError:
                return False

        wait_until(ready, what="the installed chatlimit serve")
        status, page = get(f"http://127.0.0.1:{port}/")
        assert status == HTTPStatus.OK and b"<html" in page.lower()
        assert get(f"http://127.0.0.1:{port}/static/chat.js")[0] == HTTPStatus.OK
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/chat", data=json.dumps({"message": "hello"}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = json.load(answer)
            assert answer.status == HTTPStatus.OK
            assert answer.headers["X-Served-By"] == "installed"
        assert body["reply"] and body["quota"]["remaining"] == 2
    finally:
        app.stop()
    assert "Traceback" not in app.log_tail(200)
