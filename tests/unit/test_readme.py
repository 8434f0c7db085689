"""The README's first screen gets a newcomer from a clone to the bypass: its quick start comes
first, in the order that shows the bug and then the fix, and every command in it is one the
real `chatlimit` parser accepts."""

from __future__ import annotations

import re
import shlex

import pytest

from chatlimit.cli import build_parser

from ..support import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
FIRST_SCREEN = "\n".join(README.splitlines()[:45])


def quick_start() -> str:
    start = README.find("## Quick start")
    return README[start:README.index("\n## ", start + 1)] if start >= 0 else ""


def commands(section: str) -> list[str]:
    """Command lines in the section's code blocks: `$ ` prompts, or bare lines in sh blocks."""
    found = []
    for lang, block in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if lang == "console":
                if line.startswith("$ "):
                    found.append(line[2:])
            elif line and not line.startswith("#"):
                found.append(line)
    return found


def test_the_quick_start_is_on_the_first_screen_and_ends_at_the_bypass_then_the_fix() -> None:
    assert "## Quick start" in FIRST_SCREEN
    assert README.index("## Quick start") < README.index("## The two commands")
    assert "BYPASSED: 6 of 6 allowed, limit 3: each replica counts alone" in FIRST_SCREEN
    steps = commands(quick_start())
    order = ["./scripts/run", "chatlimit cluster --storage memory --port",
             "chatlimit compare http://127.0.0.1:8080 --expect bypassed",
             "chatlimit cluster --port", "chatlimit compare http://127.0.0.1:8080 --expect enforced"]
    positions = [next(i for i, step in enumerate(steps) if step.startswith(want)) for want in order]
    assert positions == sorted(positions), steps


@pytest.mark.parametrize("line", [c for c in commands(quick_start()) if c.startswith("chatlimit ")])
def test_every_chatlimit_command_in_the_quick_start_parses(line: str) -> None:
    args = build_parser().parse_args(shlex.split(line)[1:])  # argparse exits 2 on a bad one
    assert callable(args.func)


def test_the_two_commands_stay_what_they_are() -> None:
    assert ("```sh\n./scripts/run     # serve the chat at http://127.0.0.1:8000 (memory mode, one "
            "process)\n./scripts/test    # run the whole test suite\n```") in README


def test_the_guide_is_named_and_docker_is_described_once() -> None:
    assert '"Redis for Rate Limiting: Complete Guide"' in README.split("## Quick start")[0]
    assert README.count("docker compose up -d --build --wait\n") == 1
    for page in re.findall(r"\]\((docs/[\w./-]+\.md)\)", README):
        assert (ROOT / page).is_file(), page
