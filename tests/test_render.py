"""Rendering for Slack: markdown kept intact in blocks, mrkdwn fallback, splitting within limits."""

from __future__ import annotations

from bot.slack.render import (
    build_answer_body,
    build_message_parts,
    split_markdown,
    to_mrkdwn,
)
from bot.types import Answer, Citation


def test_links_with_parentheses_survive_in_mrkdwn() -> None:
    out = to_mrkdwn("See [the RFC (draft)](https://example.com/wiki/Saga_(pattern)) now")
    # a label written by the model never hides the target: the URL is shown, whole
    assert "the RFC (draft) (<https://example.com/wiki/Saga_(pattern)>)" in out


def test_bold_lists_and_code() -> None:
    md = "# Plan\n\n**Use** an outbox.\n\n- one\n- two\n  1. nested\n\n```ts\nif (a < b) {}\n```"
    out = to_mrkdwn(md)
    assert "*Plan*" in out
    assert "*Use* an outbox." in out
    assert "• one" in out and "1. nested" in out
    assert "```\nif (a &lt; b) {}\n```" in out


def test_control_characters_escaped() -> None:
    assert to_mrkdwn("a & b <c>") == "a &amp; b &lt;c&gt;"


def test_split_keeps_code_fences_whole_and_within_limit() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(30)) + "\n```"
    text = "intro paragraph\n\n" + code + "\n\nclosing paragraph"
    parts = split_markdown(text, limit=200)
    assert all(len(p) <= 200 for p in parts)
    for p in parts:  # every part has balanced fences
        assert p.count("```") % 2 == 0
    assert "".join(parts).count("x29 = 29") == 1


def test_short_text_is_one_part() -> None:
    assert split_markdown("hello", limit=100) == ["hello"]


def test_answer_parts_carry_sources_and_feedback_on_the_last() -> None:
    answer = Answer(
        kind="answer",
        text="para\n\n" * 3000,
        citations=[Citation(path="docs/a (1).md", source="docs", heading="Ports", url="https://git/x/docs/a (1).md")],
    )
    parts = build_message_parts(answer)
    assert len(parts) > 1
    for text, blocks in parts:
        assert len(blocks[0]["text"]) <= 12_000
        assert len(text) <= 40_000
    last_blocks = parts[-1][1]
    assert last_blocks[-1]["type"] == "context_actions"
    assert "https://git/x/docs/a%20%281%29.md" in last_blocks[0]["text"]
    assert all(b["type"] != "context_actions" for _, bl in parts[:-1] for b in bl)


def test_clarify_lists_questions_once() -> None:
    answer = Answer(kind="clarify", text="A few questions first:", questions=["How many devices?", "Which SLA?"])
    body = build_answer_body(answer)
    assert body.count("How many devices?") == 1
