"""`chatlimit --help` names what the command does today."""

from __future__ import annotations

from chatlimit.cli import build_parser


def test_help_lists_every_subcommand_and_promises_nothing_for_later() -> None:
    text = build_parser().format_help()
    for command in ("serve", "model", "cluster", "compare", "bench"):
        assert f"    {command} " in text, command
    assert "later" not in text
