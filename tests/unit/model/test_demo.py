"""The demo model: deterministic answers in word tokens, and the conversation the server sends."""

from __future__ import annotations

from chatlimit.model import demo
from chatlimit.model.conversation import Turn, conversation


def test_tokens_join_back_into_the_text() -> None:
    text = "Hello!  I'm the demo\nmodel."
    assert "".join(demo.tokens(text)) == text
    assert len(demo.tokens(text)) == 5


def test_the_same_message_always_gets_the_same_answer() -> None:
    turns = [Turn("user", "tell me about redis")]
    assert demo.answer(turns, 256) == demo.answer(turns, 256)
    assert "".join(demo.answer(turns, 256).tokens).startswith("Redis keeps one shared counter")


def test_a_story_is_longer_than_the_default_max_tokens_and_ends_by_length() -> None:
    answer = demo.answer([Turn("user", "Tell me a story")], 256)
    assert len(answer.tokens) == 256
    assert answer.finish_reason == "length"
    assert demo.answer([Turn("user", "hi")], 256).finish_reason == "stop"


def test_the_cut_drill_breaks_off_after_a_few_tokens() -> None:
    assert demo.answer([Turn("user", "simulate a cut")], 256).cut_after == demo.CUT_AFTER


def test_the_answer_replies_to_the_last_user_turn() -> None:
    turns = [Turn("user", "hello"), Turn("assistant", "Hi"), Turn("user", "thanks")]
    assert "".join(demo.answer(turns, 256).tokens).startswith("You're welcome")


def test_the_server_caps_the_history_it_forwards() -> None:
    history = [Turn("user" if n % 2 else "assistant", f"turn {n}") for n in range(20)]
    sent = conversation("now", history, system_prompt="be brief", max_turns=4)
    assert [t.content for t in sent] == ["be brief", "turn 16", "turn 17", "turn 18", "turn 19", "now"]
    assert [t.role for t in conversation("now", history, system_prompt="", max_turns=0)] == ["user"]
