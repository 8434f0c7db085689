"""The bench's arithmetic: same-round ratios, spreads and the targets judged from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatlimit.tools.bench.curves import summarise_streams, summarise_users
from chatlimit.tools.bench.report import summarise, write
from chatlimit.tools.bench.targets import evaluate


def _row(variant: str, rnd: int, rps: float, cpu: float = 100.0, **more: Any) -> dict[str, Any]:
    return {"variant": variant, "round": rnd, "rps": rps, "p50_ms": 1.0, "p99_ms": 2.0,
            "app_cpu_us": cpu, "redis_cpu_us": None, "redis_commands_per_request": 0.0,
            "round_trips_per_request": 1.0, "non_2xx": 0, "socket_errors": 0, **more}


def test_ratios_divide_by_the_same_round_so_a_slow_round_slows_both_sides() -> None:
    rows = [
        _row("baseline", 1, 1000), _row("bare", 1, 1100), _row("redis-fw", 1, 950, 108),
        _row("slowapi-redis-fw", 1, 300),
        # Round 2 ran on a busy machine: everything at half speed, the ratios unchanged.
        _row("baseline", 2, 500), _row("bare", 2, 550), _row("redis-fw", 2, 475, 108),
        _row("slowapi-redis-fw", 2, 150),
    ]
    summary = {s["variant"]: s for s in summarise(rows, ["baseline", "bare", "redis-fw",
                                                         "slowapi-redis-fw"])}
    ours = summary["redis-fw"]
    assert ours["ratio"] == ours["ratio_min"] == ours["ratio_max"] == 0.95
    assert round(ours["bare_ratio"], 3) == round(950 / 1100, 3)
    assert round(ours["vs_slowapi"], 3) == round(950 / 300, 3)
    targets = evaluate({"summary": list(summary.values())})
    judged = {(t["variant"], t["what"]): t["met"] for t in targets}
    assert judged[("redis-fw", "req/s ÷ limiter off")] is True  # 0.95 >= 0.90
    assert judged[("redis-fw", "app CPU per request ÷ limiter off")] is True  # 1.08 <= 1.10
    assert judged[("redis-fw", "req/s ÷ stock slowapi's")] is True  # 3.17 >= 2.5
    assert not any(t["variant"] in ("baseline", "bare", "slowapi-redis-fw") for t in targets)


def test_the_users_curve_compares_each_size_with_one_user_of_the_same_storage() -> None:
    def point(storage: str, users: int, rnd: int, rps: float) -> dict[str, Any]:
        return {"variant": f"users-{storage}-{users}", "storage": storage, "users": users,
                "round": rnd, "rps": rps, "p99_ms": 5.0, "app_cpu_us": 200.0, "non_2xx": 0}

    rows = [point("memory", 1, 1, 1000), point("memory", 1000, 1, 850),
            point("redis", 1, 1, 800), point("redis", 1000, 1, 780)]
    fills = {"users-memory-1000": {"users": 1000, "keys": 2000, "bytes_per_key": 300.0,
                                   "measure": "app RSS"}}
    layout = {"limits_memory": {"bytes_per_key": 400.0}}
    users = summarise_users(rows, fills, layout)
    ratios = {p["variant"]: p["ratio"] for p in users["summary"]}
    assert ratios["users-memory-1000"] == 0.85 and ratios["users-redis-1000"] == 0.975
    assert users["bytes"]["memory"]["ratio"] == 0.75
    judged = {t["variant"]: t["met"] for t in evaluate({"summary": [], "users": users})}
    assert judged == {"users-memory-1000": False, "users-redis-1000": True, "memory": True}


def test_each_users_point_divides_by_the_one_user_run_made_beside_it() -> None:
    from chatlimit.tools.bench.users import curve_variants, pairs

    planned = [tuple(v.name for v in pair) for pair in pairs(curve_variants([1, 10, 100]))]
    assert planned == [("users-memory-1", "users-memory-10"), ("users-memory-1", "users-memory-100"),
                       ("users-redis-1", "users-redis-10"), ("users-redis-1", "users-redis-100")]

    def run(users: int, rps: float, pair: int) -> dict[str, Any]:
        return {"variant": f"users-memory-{users}", "storage": "memory", "users": users,
                "round": 1, "rps": rps, "p99_ms": 5.0, "app_cpu_us": 1e6 / rps, "non_2xx": 0,
                "pair": pair}

    # The machine slowed to half between the two pairs of the same round: each ratio sees only
    # the one-user run beside it, so both stay 0.9.
    rows = [run(1, 1000, 10), run(10, 900, 10), run(1, 500, 100), run(100, 450, 100)]
    summary = summarise_users(rows, {}, {})["summary"]
    assert {p["variant"]: p["ratio"] for p in summary} == {
        "users-memory-1": 1.0, "users-memory-10": 0.9, "users-memory-100": 0.9}
    assert {p["rounds"] for p in summary} == {1}  # one round, though one user ran twice


def test_streaming_is_judged_against_limiter_off_in_the_same_round() -> None:
    def run(variant: str, rnd: int, ttft: float, rate: float, calls: float | None
            ) -> dict[str, Any]:
        return {"variant": variant, "streams": 100, "round": rnd, "ttft_p50_ms": ttft,
                "ttft_p99_ms": 2 * ttft, "tokens_per_s_p50": rate, "tokens_per_s_total": rate,
                "app_cpu_ms_per_reply": 1.0, "storage_calls_per_reply": calls, "non_200": 0,
                "errors": 0}

    streams = summarise_streams([run("stream-off", 1, 10, 30, None),
                                 run("stream-redis", 1, 10.5, 29, 2.0)])
    on = streams["summary"][1]
    assert on["ttft_p50_ratio"] == 1.05 and round(on["tokens_ratio"], 3) == round(30 / 29, 3)
    judged = {t["what"]: t["met"] for t in evaluate({"summary": [], "streams": streams})}
    assert judged == {"TTFT p50 ÷ limiter off": True, "TTFT p99 ÷ limiter off": True,
                      "tokens/s, limiter off ÷ on": True, "storage calls per reply": True}


def test_the_upstream_pair_divides_by_limiter_off_upstream_and_is_shown_not_judged() -> None:
    def run(variant: str, ttft: float, upstream: bool) -> dict[str, Any]:
        return {"variant": variant, "upstream": upstream, "streams": 100, "round": 1,
                "ttft_p50_ms": ttft, "ttft_p99_ms": ttft, "tokens_per_s_p50": 30,
                "tokens_per_s_total": 30, "app_cpu_ms_per_reply": 1.0,
                "storage_calls_per_reply": 2.0 if "redis" in variant else None, "non_200": 0,
                "errors": 0}

    streams = summarise_streams([
        run("stream-off-upstream", 40, True), run("stream-off", 10, False),
        run("stream-redis-upstream", 42, True), run("stream-redis", 15, False)])
    rows = {r["variant"]: r for r in streams["summary"]}
    assert rows["stream-redis-upstream"]["ttft_p50_ratio"] == 1.05  # 42 / 40, not 42 / 10
    assert rows["stream-redis"]["ttft_p50_ratio"] == 1.5
    assert [r["variant"] for r in streams["summary"]] == [
        "stream-off", "stream-redis", "stream-off-upstream", "stream-redis-upstream"]
    judged = {t["variant"] for t in evaluate({"summary": [], "streams": streams})}
    assert judged == {"stream-redis x100"}


def test_a_run_of_some_sections_replaces_only_those_in_the_report_it_remeasures() -> None:
    from chatlimit.tools.bench.report import merge

    def streams(ttft_on: float) -> dict[str, Any]:
        def run(variant: str, ttft: float) -> dict[str, Any]:
            return {"variant": variant, "streams": 100, "round": 1, "ttft_p50_ms": ttft,
                    "ttft_p99_ms": ttft, "tokens_per_s_p50": 30, "tokens_per_s_total": 30,
                    "app_cpu_ms_per_reply": 1.0, "storage_calls_per_reply": 2.0, "non_200": 0,
                    "errors": 0}
        return summarise_streams([run("stream-off", 10), run("stream-redis", ttft_on)])

    main = [_row("baseline", 1, 1000), _row("redis-fw", 1, 950, 108)]
    full = {"config": {"rounds": 3, "streams": [100]}, "machine": {"date": "the full run"},
            "summary": summarise(main, ["baseline", "redis-fw"]), "runs": main, "targets": [],
            "users": {"summary": []}, "streams": streams(20), "ceiling": [{"calls": 1}]}
    again = {"config": {"rounds": 5, "streams": [100], "sections": ["streams"]},
             "machine": {"date": "the re-run", "load_before": [0.5], "wall_seconds": 60.0},
             "summary": [], "runs": [], "targets": [], "streams": streams(10.5)}

    merged = merge(full, again, {"streams"})
    for kept in ("summary", "runs", "users", "ceiling", "machine"):
        assert merged[kept] == full[kept], kept
    assert merged["config"]["rounds"] == 3  # the main table's rounds, not the re-run's
    assert merged["streams"]["date"] == "the re-run"
    assert merged["streams"]["summary"] == again["streams"]["summary"]
    judged = {(t["variant"], t["what"]): t["met"] for t in merged["targets"]}
    assert judged[("stream-redis x100", "TTFT p50 ÷ limiter off")] is True  # 1.05, the re-run's
    assert judged[("redis-fw", "req/s ÷ limiter off")] is True  # the main table, kept
    assert "ceiling_date" not in merged  # the ceiling is the full run's

    again["ceiling"] = [{"calls": 2}]
    merged = merge(full, again, {"ceiling"})
    assert merged["ceiling"] == [{"calls": 2}] and merged["ceiling_date"] == "the re-run"


def test_the_checked_in_report_is_what_the_code_renders_from_its_raw_run(
        tmp_path: Path) -> None:
    # docs/benchmarks.md is regenerated from docs/benchmarks.json, charts included: a change to
    # the report's text or figures shows up here until the docs are written again.
    docs = Path(__file__).resolve().parents[3] / "docs"
    written = {p.name: p for p in write(json.loads((docs / "benchmarks.json").read_text()),
                                        tmp_path)}
    assert {"benchmarks.png", "benchmarks-users.png", "benchmarks-streams.png"} <= set(written)
    assert written["benchmarks-streams.png"].read_bytes().startswith(b"\x89PNG")
    rendered = written["benchmarks.md"].read_text()
    assert "(benchmarks-streams.png)" in rendered and "(benchmarks-users.png)" in rendered
    assert rendered == (docs / "benchmarks.md").read_text()

