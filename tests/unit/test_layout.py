"""The package's rooms and the one direction of its imports (README, "Where things are"):
cli -> app -> web -> model and limiter -> observe -> storage, with settings, strategies and
uri beneath everything and tools beside (only cli reaches into them)."""

from __future__ import annotations

import ast
from pathlib import Path

import chatlimit

PACKAGE = Path(chatlimit.__file__).resolve().parent
# Higher imports lower, never the other way; equal ranks do not import each other.
RANK = {
    "__init__": 0, "strategies": 0, "uri": 0, "settings": 1,
    "storage": 2, "observe": 3, "limiter": 4, "model": 4, "web": 5, "app": 6, "cli": 7,
    "__main__": 8,
}
BENEATH = {"__init__", "strategies", "uri", "settings"}


def imports_between_rooms() -> set[tuple[str, str]]:
    """(room, imported room) for every import of chatlimit by chatlimit, lazy ones included."""
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        package = ["chatlimit", *parts] if path.name == "__init__.py" else ["chatlimit", *parts[:-1]]
        room = parts[0] if parts else "__init__"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[list[str]] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - (node.level - 1)]
                if node.module:
                    targets = [[*base, *node.module.split(".")]]
                else:
                    targets = [[*base, alias.name] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chatlimit"):
                targets = [str(node.module).split(".")]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".") for a in node.names if a.name.startswith("chatlimit")]
            for target in targets:
                imported = target[1] if len(target) > 1 else "__init__"
                imported = "__init__" if imported == "__version__" else imported
                if imported != room:
                    edges.add((room, imported))
    return edges


def test_imports_flow_one_way_and_only_the_command_line_reaches_the_tools() -> None:
    edges = imports_between_rooms()
    assert edges, "no imports found: the walk is broken"
    for room, imported in sorted(edges):
        if imported == "tools":
            assert room == "cli", f"{room} imports tools: the app must run without the extra"
        elif room == "tools":
            assert imported != "cli", "tools import the command line"
        elif room in BENEATH and imported in BENEATH:
            assert RANK[room] >= RANK[imported], f"{room} -> {imported}"
        else:
            assert RANK[room] > RANK[imported], f"{room} imports {imported}, against the flow"


def test_the_rooms_are_the_documented_ones() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == {"web", "limiter", "storage", "observe", "model", "tools"}


def test_dead_code_found_in_review_stays_gone() -> None:
    import inspect

    from chatlimit.limiter import ChatLimiter, keys
    from chatlimit.storage import Counter, Verdict
    from chatlimit.tools.redis_topologies import ClusterTopology, SentinelTopology
    from chatlimit.web.middleware import StandardHeaders

    assert not hasattr(Verdict, "quota")  # quotas[i]: one per limit
    assert not hasattr(Counter, "kind")
    assert not hasattr(ChatLimiter, "degraded")  # a Decision says whether it was degraded
    assert "extra" not in inspect.signature(StandardHeaders).parameters
    assert not hasattr(SentinelTopology, "stop_primary")
    assert not hasattr(ClusterTopology, "node_for_slot")
    assert not hasattr(keys, "storage_key")  # was used by tests only
