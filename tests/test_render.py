"""Rendering for Slack: markdown kept intact in blocks, mrkdwn fallback, splitting within limits."""

from __future__ import annotations

from bot.slack.neutralise import strip_marks
from bot.slack.render import (
    build_answer_body,
    build_failure_message,
    build_message_parts,
    render_sources_markdown,
    split_markdown,
    to_mrkdwn,
)
from bot.types import Answer, Citation, Disagreement


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


# -- evidence, record lines, truncation, language ------------------------------------------
PORTS = Citation(
    path="deploy/ports.md",
    source="docs",
    heading="Ports > ADB",
    url="https://git.example/blob/main/deploy/ports.md",
    cited_text="ADB ports 5555-5655 are reserved\nfor device containers; | see table |",
    number=1,
    status="current",
    date="2026-03-02",
)
NETWORK = Citation(path="ops/network.md", source="docs", heading="Firewall", cited_text="5555-5600", number=2)
LISTED = Citation(path="patterns/bulkhead.md", source="knowledge", heading="Bulkhead")


def test_sources_show_number_path_heading_status_date_and_the_quote() -> None:
    answer = Answer(kind="answer", text="Use 5555-5655. [1][2]", citations=[PORTS, NETWORK, LISTED])
    body = strip_marks(build_answer_body(answer))  # the bot's own link labels carry the neutraliser's mark
    sources = body[body.index("**Sources**") :]
    lines = sources.splitlines()
    assert lines[1] == (
        "1. [deploy/ports.md › Ports > ADB](https://git.example/blob/main/deploy/ports.md) · _current · 2026-03-02_"
    )
    assert lines[2] == "   > “ADB ports 5555-5655 are reserved for device containers; ¦ see table ¦”"
    assert lines[3] == "2. `ops/network.md › Firewall`" and lines[4] == "   > “5555-5600”"
    # listed but never quoted: apart, unnumbered
    assert lines[-1] == "Also consulted (not quoted): `knowledge/patterns/bulkhead.md › Bulkhead`"


def test_long_quotes_are_cut_to_about_two_lines() -> None:
    long = Citation(path="a.md", source="docs", cited_text="word " * 200, number=1)
    quote = render_sources_markdown([long]).splitlines()[-1]
    assert quote.endswith("…”") and len(quote) < 220
    zh = Citation(path="b.md", source="docs", cited_text="设备心跳" * 100, number=1)
    quote = render_sources_markdown([zh], lang="zh").splitlines()[-1]
    assert quote.endswith("…”") and len(quote) < 120


def test_record_lines_conflicts_gaps_and_confidence() -> None:
    answer = Answer(
        kind="answer",
        text="Body.",
        citations=[PORTS, NETWORK],
        conflicts=["ADB port range (deploy/ports.md vs ops/network.md)"],
        disagreements=[Disagreement("ADB port range", ["deploy/ports.md", "ops/network.md"])],
        gaps=["how the firewall is deployed"],
        confidence="medium",
    )
    body = build_answer_body(answer)
    assert ":warning: **Docs disagree:** ADB port range: [1] vs [2]" in body
    assert "**Not in the docs:** how the firewall is deployed" in body
    assert "**Confidence:** medium — the docs contradict each other" in body
    assert body.index("Docs disagree") < body.index("**Sources**")  # seen before the evidence list
    answer.confidence_reason = "two docs give two ranges"
    assert "**Confidence:** medium — two docs give two ranges" in build_answer_body(answer)


def test_a_side_that_was_not_quoted_is_named_by_its_path() -> None:
    answer = Answer(
        kind="answer",
        text="x",
        citations=[PORTS],
        disagreements=[Disagreement("DLX name", ["deploy/ports.md", "ops/rabbit.md"]), Disagreement("b", ["x", "y"])],
        confidence="low",
    )
    body = build_answer_body(answer)
    assert "- DLX name: [1] vs `ops/rabbit.md`" in body and "- b: `x` vs `y`" in body
    answer.disagreements = []
    assert "**Confidence:** low — 1 quoted passage(s) back it" in build_answer_body(answer)


def test_a_truncated_answer_says_so_and_offers_to_continue() -> None:
    body = build_answer_body(Answer(kind="answer", text="Step 1: do", truncated=True))
    assert body.startswith("Step 1: do\n\n:scissors: _The answer stopped at the length limit._")
    assert "Reply *continue* in this thread" in body
    assert "*继续*" in build_answer_body(Answer(kind="answer", text="第一步", truncated=True), lang="zh")


def test_chinese_fixed_strings_in_body_and_buttons() -> None:
    answer = Answer(
        kind="answer",
        text="使用 5555-5655。[1]",
        citations=[PORTS, LISTED],
        gaps=["防火墙如何部署"],
        confidence="high",
    )
    (text, blocks), *_ = build_message_parts(answer, lang="zh")
    markdown = blocks[0]["text"]
    assert "**来源**" in markdown and "_现行 · 2026-03-02_" in markdown
    assert "另有参考（未引用原文）" in markdown and "**文档未涉及：** 防火墙如何部署" in markdown
    assert "**把握程度：** 高 — 有 1 段文档原文支持" in markdown
    buttons = blocks[-1]["elements"][0]
    assert buttons["positive_button"]["text"]["text"] == "有帮助"
    assert buttons["negative_button"]["text"]["text"] == "没帮助"
    assert "Sources" not in markdown and "Helpful" not in str(blocks)
    assert "来源" in text  # the notification fallback too
    failure, _ = build_failure_message(lang="zh")
    assert failure.startswith(":warning: 抱歉")


def test_a_clarifying_reply_always_leads_with_its_provisional_answer() -> None:
    questions = ["How many events a second at peak?", "Must events stay in order per device?"]
    provisional = "For now, publish to the topic exchange and give notifications its own durable queue."
    bare = Answer(
        kind="clarify",
        text="\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1)),
        questions=questions,
        provisional=provisional,
    )
    body = build_answer_body(bare)
    assert body.startswith(provisional) and body.index(provisional) < body.index(questions[0])
    written = (
        "Publish device events to the topic exchange for now and bind a durable queue for the notification "
        "service; this holds as long as a few hundred events a second and no ordering need.\n\n" + bare.text
    )
    full = Answer(kind="clarify", text=written, questions=questions, provisional=provisional)
    assert provisional not in build_answer_body(full)  # the model wrote one: nothing is added
