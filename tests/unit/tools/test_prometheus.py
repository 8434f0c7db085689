"""prometheus/prometheus.yml (compose) and the local stack's config (tools/prometheus.py): the
same job, both valid for Debian's promtool, scraping every replica directly."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chatlimit.tools.prometheus import JOB, scrape_config

from ...support import ROOT, missing

COMPOSE_CONFIG = ROOT / "prometheus" / "prometheus.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing("promtool not found: install it with: sudo apt-get install prometheus")
    assert found is not None
    return found


@pytest.mark.parametrize("which", ["compose", "local"])
def test_promtool_accepts_the_config(which: str, tmp_path: Path) -> None:
    path = COMPOSE_CONFIG
    if which == "local":
        path = tmp_path / "prometheus.yml"
        path.write_text(json.dumps(scrape_config({"app-1": "127.0.0.1:9001"}, "1s")))
    checked = subprocess.run([promtool(), "check", "config", str(path)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_and_local_configs_scrape_the_same_job_on_every_replica() -> None:
    compose = yaml.safe_load(COMPOSE_CONFIG.read_text())
    local = scrape_config({f"app-{i}": f"app-{i}:7860" for i in (1, 2, 3)}, "5s")
    assert compose["global"] == local["global"]
    assert compose["scrape_configs"] == local["scrape_configs"]
    assert compose["scrape_configs"][0]["job_name"] == JOB
    services = yaml.safe_load((ROOT / "docker-compose.scaled.yml").read_text())["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    assert all(services[f"app-{i}"]["environment"]["METRICS"] == "${METRICS:-on}" for i in (1, 2, 3))
