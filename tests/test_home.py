"""The App Home tab: the view it builds, and what Slack's views.publish receives."""

from __future__ import annotations

import json
import time

from bot.config import Settings
from bot.slack.home import HomeFigures, RecentQuestion, build_home_view, build_sources_text

NOW = 1_750_000_000.0


def _text(view: dict) -> str:
    return json.dumps(view, ensure_ascii=False)


def test_view_explains_sources_questions_and_feedback() -> None:
    info = {
        "documents": 40,
        "chunks": 300,
        "indexed_at": NOW - 7200,
        "sources": [
            {"source": "knowledge", "documents": 25, "chunks": 200, "indexed_at": NOW - 86400 * 3},
            {"source": "platform-docs", "documents": 15, "chunks": 100, "indexed_at": NOW - 7200},
        ],
    }
    view = build_home_view(
        settings=Settings(ANTHROPIC_API_KEY="sk-ant-x"),
        index_info=info,
        recent=[RecentQuestion(channel="C1", question="<@U0BOT> How do we retry <payments>?", asked_at=NOW - 60)],
        figures=HomeFigures(answers=12, up=9, down=3),
        bot_user_id="U0BOT",
        now=NOW,
    )
    assert view["type"] == "home"
    assert len(view["blocks"]) <= 100
    text = _text(view)
    assert "Mention <@U0BOT>" in text and "/arch-review" in text
    assert "*platform-docs* — 15 docs, 100 passages · updated 2 h ago" in text
    assert "*knowledge* — 25 docs, 200 passages · updated 3 days ago" in text
    assert "How do we retry &lt;payments&gt;?" in text and "<@U0BOT> How" not in text
    assert "<#C1>" in text
    assert "*12* answers" in text and "👍 *9*" in text and "👎 *3*" in text and "75% helpful" in text
    assert "retrieval-only" not in text


def test_view_when_nothing_is_indexed_and_no_model() -> None:
    view = build_home_view(settings=Settings(), index_info=None, recent=[], figures=HomeFigures(), now=NOW)
    text = _text(view)
    assert "archbot index" in text
    assert "retrieval-only" in text
    assert "No questions from public channels yet." in text
    assert "@archbot" in text


def test_sources_text_tolerates_other_shapes() -> None:
    assert "empty" in build_sources_text({"sources": [], "documents": 0}, now=NOW)
    assert "3 docs, 9 passages" in build_sources_text({"files": 3, "passages": 9}, now=NOW)
    text = build_sources_text({"sources": [{"name": "adr", "files": 2}]}, now=NOW)
    assert "*adr* — 2 docs" in text


def test_long_questions_are_cut() -> None:
    view = build_home_view(
        settings=Settings(),
        index_info=None,
        recent=[RecentQuestion(channel="C1", question="why " * 200, asked_at=time.time())],
        figures=HomeFigures(),
    )
    quoted = [b for b in view["blocks"] if b.get("text", {}).get("text", "").startswith("> ")]
    assert len(quoted) == 1 and len(quoted[0]["text"]["text"]) < 250
