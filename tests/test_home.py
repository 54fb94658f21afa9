"""The App Home tab: the view it builds, and what Slack's views.publish receives."""

from __future__ import annotations

import json
import time
from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.retrieval import index_sources
from bot.slack.home import HomeFigures, RecentQuestion, build_home_view, build_sources_text, publish_home
from bot.slack.neutralise import neutralise_view
from bot.stats import index_summary
from bot.store import Store
from bot.types import Answer
from tests.conftest import bot_settings, running_bot
from tests.fakes import FakeSlack, app_home_opened_event, event_callback, post_event

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
    view = neutralise_view(view)  # as Slack receives it (bot/slack/post.py)
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


def test_sources_text_from_the_searchers_own_report(tmp_path: Path) -> None:
    from bot.retrieval import Searcher

    settings = Settings(ARCHBOT_DB=str(tmp_path / "ix.db"))
    index_sources(settings)
    searcher = Searcher(settings.db_path)
    try:
        info = searcher.info()
    finally:
        searcher.close()
    text = build_sources_text(info, now=time.time())
    assert text.startswith("• *knowledge* — ") and "docs" in text and "passages" in text and "updated" in text
    assert "empty" not in build_sources_text(info, now=time.time())
    assert "archbot index" in build_sources_text({"sources": {}, "chunks": 0}, now=NOW)


def test_long_questions_are_cut() -> None:
    view = build_home_view(
        settings=Settings(),
        index_info=None,
        recent=[RecentQuestion(channel="C1", question="why " * 200, asked_at=time.time())],
        figures=HomeFigures(),
    )
    quoted = [b for b in view["blocks"] if b.get("text", {}).get("text", "").startswith("> ")]
    assert len(quoted) == 1 and len(quoted[0]["text"]["text"]) < 250


# -- against the fake Slack ------------------------------------------------------------------
def _seed(store: Store) -> None:
    """Answers asked in a public channel, a private one, a private one stored as 'channel', a DM."""
    asked = [
        ("C1PUBLIC", "channel", "1.1", "How do we version events on the bus?"),
        ("C2SECRET", "group", "1.2", "Secret reorg question from a private channel"),
        ("C3PRIV", "channel", "1.3", "A mention in a private channel, stored without its type"),
        ("D1", "im", "1.4", "A question sent privately by DM"),
        ("C1PUBLIC", "channel", "1.5", "Where does the order saga compensate?"),
    ]
    for channel, channel_type, ts, question in asked:
        answer = Answer(kind="answer", text="…")
        store.record_answer(
            job=None,
            channel=channel,
            thread_ts=ts,
            message_ts=ts + "1",
            question=question,
            answer=answer,
            channel_type=channel_type,
        )
    store.record_feedback(channel="C1PUBLIC", message_ts="1.11", user="U1", value="up")
    store.record_feedback(channel="C1PUBLIC", message_ts="1.51", user="U2", value="down")
    store.record_feedback(channel="C1PUBLIC", message_ts="1.51", user="U3", value="up")


CHANNELS = {"C2SECRET": {"is_private": True}, "C3PRIV": {"is_private": True}, "D1": {"is_im": True}}


def _assert_public_only(view: dict) -> None:
    text = _text(view)
    assert "How do we version events on the bus?" in text
    assert "Where does the order saga compensate?" in text
    assert "<#C1PUBLIC>" in text
    for private in ("Secret reorg", "stored without its type", "privately by DM", "C2SECRET", "C3PRIV", "<#D1>"):
        assert private not in text, private


async def test_publish_home_shows_public_questions_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "archbot.db")
    _seed(store)
    index_sources(Settings(ARCHBOT_DB=str(tmp_path / "archbot.db")))
    try:
        async with FakeSlack(channels=CHANNELS) as slack:
            client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
            await publish_home(client, user_id="U1", settings=Settings(), store=store, index_info=index_summary(store))
            [call] = slack.calls_to("views.publish")
            assert call.args["user_id"] == "U1"
            view = call.args["view"]
            assert slack.home_views["U1"]["type"] == "home"
    finally:
        store.close()
    _assert_public_only(view)
    text = _text(view)
    assert "*knowledge* — " in text and "passages" in text
    assert "*5* answers in the last 30 days · 👍 *2* · 👎 *1*" in text
    # newest first
    assert text.index("Where does the order saga") < text.index("How do we version events")


async def test_publish_home_fails_closed_when_slack_cannot_confirm(tmp_path: Path) -> None:
    store = Store(tmp_path / "archbot.db")
    _seed(store)
    try:
        async with FakeSlack(channels=CHANNELS) as slack:
            slack.fail("conversations.info", error="ratelimited", times=None)
            client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
            await publish_home(client, user_id="U1", settings=Settings(), store=store, index_info=None)
            view = slack.calls_to("views.publish")[0].args["view"]
    finally:
        store.close()
    text = _text(view)
    assert "No questions from public channels yet." in text
    assert "How do we version" not in text


async def test_app_home_opened_event_publishes(tmp_path: Path) -> None:
    """End to end: the event over signed HTTP → the bot's listener → views.publish on the fake."""
    async with FakeSlack(channels=CHANNELS) as slack:
        settings = bot_settings(tmp_path, slack)
        store = Store(settings.db_path)
        _seed(store)
        store.close()
        async with running_bot(settings) as bot:
            status, _ = await post_event(
                f"http://127.0.0.1:{bot.port}",
                slack.signing_secret,
                event_callback(app_home_opened_event(user="U7", channel="D7")),
            )
            assert status == 200
            view = await slack.wait_for(lambda f: f.home_views.get("U7"))
    _assert_public_only(view)


async def test_home_speaks_the_viewers_language(tmp_path: Path) -> None:
    from bot.types import Job

    store = Store(tmp_path / "archbot.db")
    question = "设备事件应该如何送达通知服务？"
    job_id = store.enqueue(kind="mention", channel="C1PUBLIC", ts="2.1", thread_ts="2.1", user="U7", text=question)
    assert job_id is not None
    asker = Job(id=job_id, kind="mention", channel="C1PUBLIC", ts="2.1", thread_ts="2.1", user="U7", text=question)
    store.record_answer(
        job=asker,
        channel="C1PUBLIC",
        thread_ts="2.1",
        message_ts="2.11",
        question=question,
        answer=Answer(kind="answer", text="…"),
    )
    try:
        async with FakeSlack() as slack:
            client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
            for user in ("U7", "U8"):  # U7 asked in Chinese; U8 never asked: ARCHBOT_LANGUAGE
                await publish_home(client, user_id=user, settings=Settings(), store=store, index_info=None)
            await publish_home(
                client, user_id="U9", settings=Settings(ARCHBOT_LANGUAGE="zh"), store=store, index_info=None
            )
            views = {c.args["user_id"]: _text(c.args["view"]) for c in slack.calls_to("views.publish")}
    finally:
        store.close()
    assert "如何提问" in views["U7"] and "最近的问题" in views["U7"] and "How to ask" not in views["U7"]
    assert "How to ask" in views["U8"] and "如何提问" not in views["U8"]
    assert "还没有建立索引" in views["U9"]
