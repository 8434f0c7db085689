"""`chatlimit compare --tokens`: the verdict from what the model billed against TOKEN_LIMIT."""

from __future__ import annotations

from chatlimit.tools.compare_tokens import TokenResult, TokenRow


def rows(*statuses: tuple[str, int, str]) -> list[TokenRow]:
    return [TokenRow(n, name, status, 276 if status == 200 else None, None, exceeded)
            for n, (name, status, exceeded) in enumerate(statuses, start=1)]


def test_a_bill_within_the_budget_after_a_refusal_for_tokens_is_enforced() -> None:
    result = TokenResult(rows(("app-1", 200, ""), ("app-2", 200, ""), ("app-3", 429, "tokens")),
                         budget=1000, billed=828, source="ledger",
                         replicas={"app-1", "app-2", "app-3"})
    assert result.verdict == "enforced"
    assert result.verdict_line() == "ENFORCED: 828 of 1,000 tokens billed (budget 1,000)"


def test_a_bill_past_the_budget_on_several_replicas_is_the_bypass() -> None:
    result = TokenResult(rows(("app-1", 200, ""), ("app-2", 200, "")), budget=1000,
                         billed=2910, source="ledger", replicas={"app-1", "app-2"})
    assert result.verdict == "bypassed"
    assert result.verdict_line() == (
        "BYPASSED: 2,910 tokens billed, budget 1,000: each replica counts alone")


def test_a_budget_never_reached_proves_nothing() -> None:
    result = TokenResult(rows(("app-1", 200, ""), ("app-1", 429, "requests")), budget=1000,
                         billed=276, source="ledger", replicas={"app-1"})
    assert result.verdict == "inconclusive"
    assert "no request was refused for tokens" in result.verdict_line()


def test_without_a_token_budget_the_run_says_so() -> None:
    result = TokenResult(rows(("app", 200, "")), budget=None, billed=276, source="answers")
    assert result.verdict == "inconclusive"
    assert "TOKEN_LIMIT off" in result.verdict_line()
