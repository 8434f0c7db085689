"""pyproject.toml allows only what the suite runs: every runtime and tools dependency has an
upper bound, and the versions requirements.txt pins (the image's, the suite's) satisfy it."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement

from ..support import ROOT


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            found[requirement.name.lower()] = next(iter(requirement.specifier)).version
    return found


def test_every_dependency_is_bounded_above_and_admits_the_pinned_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    requirements = [Requirement(r) for r in
                    [*project["dependencies"], *project["optional-dependencies"]["tools"]]]
    for requirement in requirements:
        assert any(spec.operator == "<" for spec in requirement.specifier), str(requirement)
        if requirement.name.lower() in pinned:
            assert pinned[requirement.name.lower()] in requirement.specifier, str(requirement)
    runtime = {Requirement(r).name.lower() for r in project["dependencies"]}
    assert runtime <= set(pinned), "requirements.txt pins every runtime dependency"
