"""The Space's runtime contract without a Space: `chatlimit serve` as a user that owns nothing
but its $HOME, with the code and site-packages read-only to it (as the image's root-installed
packages are), listening on $PORT. It must serve, limit and write no file outside $HOME or /tmp.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from chatlimit.tools.processes import Process, free_port, port_open, wait_until

pytestmark = pytest.mark.integration

# A uid no account and no container uses, so every file it owns is this test's.
SPACE_UID = 61860
# Everywhere such a user could create files outside $HOME and /tmp on this machine.
WORLD_WRITABLE = [Path("/var/tmp"), Path("/run/lock"), Path("/dev/shm")]


@pytest.fixture
def home() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the app as another uid")
    # Not under pytest's tmp_path: that is private to root.
    path = Path(tempfile.mkdtemp(prefix="chatlimit-space-home-"))
    os.chown(path, SPACE_UID, SPACE_UID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def reachable_project() -> Iterator[None]:
    """Let the Space user traverse down to this checkout for the duration of the test.

    The code and the venv are read from the checkout (an editable install), and a clone made
    under a private folder (mktemp -d is 0700) would hide them from any other uid. Only the
    search bit is added, only where missing, and it is taken back afterwards.
    """
    project = Path(__file__).resolve().parents[2]
    changed = []
    for folder in [project, *project.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(folder, mode | stat.S_IXOTH)
            changed.append((folder, mode))
    yield
    for folder, mode in reversed(changed):
        os.chmod(folder, stat.S_IMODE(mode))


def files_owned_by(uid: int, roots: list[Path]) -> list[Path]:
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "chatlimit-stand"]  # podman's own
            for name in [*dirnames, *filenames]:
                path = Path(dirpath, name)
                try:
                    if path.lstat().st_uid == uid:
                        found.append(path)
                except OSError:
                    pass
    return found


def test_the_app_runs_as_a_space_user_and_writes_nothing_outside_home_or_tmp(
    home: Path, reachable_project: None
) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # What the Dockerfile sets; PYTHONDONTWRITEBYTECODE keeps .pyc out of site-packages.
        "HOME": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "INSTANCE_NAME": "space",
    }
    argv = [
        "setpriv", f"--reuid={SPACE_UID}", f"--regid={SPACE_UID}", "--clear-groups",
        sys.executable, "-m", "chatlimit", "serve",
    ]
    app = Process("space", argv, Path(tempfile.gettempdir()) / f"space-{port}.log", env=env, cwd=home)
    app.start()
    try:
        wait_until(lambda: port_open(port) or not app.alive(), what="the app as a Space user")
        assert app.alive(), app.log_tail()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/").status_code == HTTPStatus.OK
            assert http.get("/readyz").status_code == HTTPStatus.OK
            codes = [http.post("/chat", json={"message": "hi"}).status_code for _ in range(4)]
            assert codes == [HTTPStatus.OK] * 3 + [HTTPStatus.TOO_MANY_REQUESTS]
            assert http.get("/api/info").json()["instance"] == "space"
    finally:
        app.stop()
        app.log_path.unlink(missing_ok=True)
    assert files_owned_by(SPACE_UID, [Path(sys.prefix), Path(__file__).parents[2], *WORLD_WRITABLE]) == []
