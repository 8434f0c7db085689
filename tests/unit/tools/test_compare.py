"""`chatlimit compare`'s verdict and table, from rows."""

from __future__ import annotations

import io

import pytest

from chatlimit.tools.compare import Result, Row, Table


def result(statuses: list[int | None], limit: int | None = 3, replicas: int = 3) -> Result:
    rows = [Row(n, f"app-{(n - 1) % replicas + 1}", s, 0, "" if s else "ConnectError")
            for n, s in enumerate(statuses, 1)]
    return Result(rows, limit, "ua", {r.served_by for r in rows if r.status})


@pytest.mark.parametrize(("statuses", "limit", "replicas", "verdict", "line"), [
    ([200] * 3 + [429] * 3, 3, 3, "enforced", "ENFORCED: 3 of 6 allowed (limit 3)"),
    ([200] * 6, 3, 3, "bypassed", "BYPASSED: 6 of 6 allowed, limit 3: each replica counts alone"),
    ([200] * 6, 3, 1, "bypassed", "BYPASSED: 6 of 6 allowed, limit 3: the limit did not hold"),
    ([200, 502, 200, None], 3, 3, "inconclusive", "INCONCLUSIVE: 2 of 4 requests failed (502, ConnectError)"),
    ([200] * 2, None, 3, "inconclusive", "INCONCLUSIVE: 2 of 2 allowed, limit unknown (pass --limit)"),
])
def test_verdicts(statuses: list[int | None], limit: int | None, replicas: int, verdict: str, line: str) -> None:
    outcome = result(statuses, limit, replicas)
    assert outcome.verdict == verdict
    assert outcome.verdict_line() == line


def test_the_table_has_colour_only_when_asked() -> None:
    for colour, escapes in ((False, False), (True, True)):
        out = io.StringIO()
        table = Table(out, colour=colour)
        table.header()
        table.row(Row(1, "app-1", 429, 0))
        table.verdict(result([200] * 3 + [429] * 3))
        assert ("\033[" in out.getvalue()) is escapes


def test_a_pipe_gets_no_colour() -> None:
    assert Table(io.StringIO()).colour is False
