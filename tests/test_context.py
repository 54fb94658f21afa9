"""Thread context: messages → turns (roles, speakers, merging, budget)."""

from __future__ import annotations

from bot.slack.context import BotIdentity, build_turns, clean_text, trim_turns
from bot.slack.listeners import classify_message
from bot.types import Turn

BOT = BotIdentity(user_id="UBOT", bot_id="BBOT")


def test_clean_text_strips_bot_mention_and_unescapes() -> None:
    text = "<@UBOT> is a &lt;b&gt; &amp; <https://x.io|x> ok for <#C1|general>?"
    assert clean_text(text, bot_user_id="UBOT") == "is a <b> & x (https://x.io) ok for #general?"


async def test_roles_speakers_and_merging() -> None:
    messages = [
        {"ts": "1.0", "user": "U1", "text": "<@UBOT> how do events reach notifications?"},
        {
            "ts": "2.0",
            "user": "UBOT",
            "bot_id": "BBOT",
            "text": "fallback",
            "blocks": [{"type": "markdown", "text": "Use RabbitMQ."}],
        },
        {"ts": "3.0", "user": "U2", "text": "what about retries?"},
        {"ts": "4.0", "user": "U1", "text": "and ordering?"},
        {"ts": "5.0", "user": "U3", "text": "a later message"},
    ]
    turns = await build_turns(
        messages,
        bot=BOT,
        names=None,
        budget_tokens=5000,
        question_ts="4.0",
        question_text="and ordering?",
        question_user="U1",
    )
    assert [t.role for t in turns] == ["user", "assistant", "user"]
    assert turns[1].text == "Use RabbitMQ."
    assert turns[2].text == "U2: what about retries?\n\nU1: and ordering?"
    assert "later" not in " ".join(t.text for t in turns)


async def test_question_missing_from_history_is_appended() -> None:
    turns = await build_turns(
        [],
        bot=BOT,
        names=None,
        budget_tokens=1000,
        question_ts="9.0",
        question_text="<@UBOT> hi there",
        question_user=None,
    )
    assert turns == [Turn(role="user", text="user: hi there")]


def test_trim_keeps_newest_and_starts_with_user() -> None:
    turns = [Turn("user", "a" * 4000), Turn("assistant", "b" * 4000), Turn("user", "c" * 400)]
    kept = trim_turns(turns, budget_tokens=1200)
    assert kept[-1].text == "c" * 400
    assert kept[0].role == "user"


def _classify(event: dict, bot_thread: bool = False, event_type: str = "message"):
    return classify_message(event, bot_user_id="UBOT", is_bot_thread=lambda c, t: bot_thread, event_type=event_type)


def test_classify_rules() -> None:
    base = {"type": "message", "channel": "C1", "user": "U1", "ts": "5.0", "text": "hello", "channel_type": "channel"}
    assert _classify(base)[0] is None  # top-level chatter
    assert _classify({**base, "text": "<@UBOT> hi"})[0].kind == "mention"
    assert _classify({**base, "channel": "D1", "channel_type": "im"})[0].kind == "dm"
    assert _classify({**base, "thread_ts": "1.0"}, bot_thread=True)[0].kind == "followup"
    assert _classify({**base, "thread_ts": "1.0"}, bot_thread=False)[0] is None
    assert _classify({**base, "bot_id": "B2"})[1] == "bot"
    assert _classify({**base, "subtype": "bot_message"})[1] == "bot"
    assert _classify({**base, "subtype": "message_changed"})[0] is None
    assert _classify({**base, "user": "UBOT", "text": "<@UBOT>"})[1] == "self"
    q = _classify({**base, "text": "<@UBOT> hi"}, event_type="app_mention")[0]
    assert q.thread_ts == "5.0"
