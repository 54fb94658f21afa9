"""The assistant surface: which prompts are suggested, and what Slack receives."""

from __future__ import annotations

from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.slack.assistant import (
    GENERIC_PROMPTS,
    MAX_PROMPTS,
    THINKING_STATUS,
    build_suggested_prompts,
    doc_titles,
    on_assistant_thread_started,
    set_status,
    usable_title,
)
from bot.types import Hit
from tests.conftest import bot_settings, running_bot
from tests.fakes import FakeSlack, assistant_thread_started_event, default_scopes, event_callback, post_event


def test_prompts_fall_back_to_general_ones() -> None:
    prompts = build_suggested_prompts([])
    assert prompts == list(GENERIC_PROMPTS[:MAX_PROMPTS])
    assert 3 <= len(prompts) <= 4
    assert all(p.title and p.message for p in prompts)


def test_prompts_draw_on_doc_titles_first() -> None:
    prompts = build_suggested_prompts(["README", "Device connection lifecycle", "billing.md", "计费服务 Saga 设计"])
    assert len(prompts) == MAX_PROMPTS
    assert "Device connection lifecycle" in prompts[0].title
    assert "Device connection lifecycle" in prompts[0].message
    assert "计费服务 Saga 设计" in prompts[1].title
    assert prompts[2:] == list(GENERIC_PROMPTS[:2])


def test_titles_are_cleaned_and_bounded() -> None:
    assert usable_title("CHANGELOG") is None
    assert usable_title("docs/guide.md") is None
    assert usable_title("# **Event bus** `rabbitmq`") == "Event bus rabbitmq"
    long = usable_title("A very long title about the way our services talk to each other over the event bus")
    assert long is not None and len(long) <= 61 and long.endswith("…")
    assert build_suggested_prompts(["Event bus", "event bus"])[1] == GENERIC_PROMPTS[0]


class ListingSearcher:
    """A searcher that lists titles itself (the preferred path)."""

    def doc_titles(self, *, limit: int) -> list[str]:
        return ["Outbox pattern in order-service", "Rate limits"][:limit]


class BrokenSearcher:
    def search(self, query: str, k: int = 8) -> list[Hit]:
        raise RuntimeError("index is being rebuilt")


async def test_doc_titles_from_a_lister_and_from_search(tmp_path: Path) -> None:
    assert await doc_titles(None) == []
    assert await doc_titles(ListingSearcher()) == ["Outbox pattern in order-service", "Rate limits"]
    assert await doc_titles(BrokenSearcher()) == []


async def test_doc_titles_from_a_real_index(tmp_path: Path) -> None:
    from bot.retrieval import Searcher, index_sources

    docs = tmp_path / "team-docs"
    docs.mkdir()
    (docs / "gateway.md").write_text(
        "# API gateway and service boundaries\n\nThe gateway routes to each service; deployment is per service."
        " Our architecture overview: one database per service, events over RabbitMQ.\n",
        encoding="utf-8",
    )
    settings = Settings(ARCHBOT_DB=str(tmp_path / "ix.db"), ARCHBOT_DOCS=str(docs))
    index_sources(settings)
    searcher = Searcher(settings.db_path)
    try:
        titles = await doc_titles(searcher)
    finally:
        searcher.close()
    assert titles == ["API gateway and service boundaries"]  # the bundled knowledge/ is not "the team's docs"


# -- against the fake Slack ------------------------------------------------------------------
async def test_thread_started_sets_suggested_prompts(tmp_path: Path) -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        offered = await on_assistant_thread_started(
            client, channel="D1", thread_ts="1700000000.000100", settings=Settings(), searcher=ListingSearcher()
        )
        state = slack.assistant_threads[("D1", "1700000000.000100")]
    assert state["suggested_prompts"] == [p.as_slack() for p in offered]
    assert len(offered) == MAX_PROMPTS
    assert state["suggested_prompts"][0]["title"] == "Explain “Outbox pattern in order-service”"
    assert state["prompts_title"]


async def test_prompt_failure_is_swallowed() -> None:
    async with FakeSlack() as slack:
        slack.fail("assistant.threads.setSuggestedPrompts", error="invalid_arguments", times=1)
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        offered = await on_assistant_thread_started(
            client, channel="D1", thread_ts="1.0", settings=Settings(), searcher=None
        )
    assert offered == []


async def test_set_status_and_clear() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        assert await set_status(client, channel="D1", thread_ts="1.0", status=THINKING_STATUS)
        assert await set_status(client, channel="D1", thread_ts="1.0", status="")
        assert slack.assistant_threads[("D1", "1.0")]["status_history"] == [THINKING_STATUS, ""]

        slack.fail("assistant.threads.setStatus", error="channel_not_found", times=1)
        assert not await set_status(client, channel="D1", thread_ts="1.0", status=THINKING_STATUS)


async def test_status_fails_quietly_without_the_scope() -> None:
    scopes = [s for s in default_scopes() if s != "assistant:write"]
    async with FakeSlack(scopes=scopes) as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        assert not await set_status(client, channel="D1", thread_ts="1.0", status=THINKING_STATUS)
        assert slack.calls_to("assistant.threads.setStatus", include_failed=True)[0].error == "missing_scope"


async def test_assistant_thread_started_event(tmp_path: Path) -> None:
    """End to end: the event over signed HTTP → the bot's listener → setSuggestedPrompts on the fake."""
    async with FakeSlack() as slack:
        settings = bot_settings(tmp_path, slack)
        async with running_bot(settings) as bot:
            event = assistant_thread_started_event(channel="D5", user="U5", thread_ts="1700000000.000500")
            status, _ = await post_event(f"http://127.0.0.1:{bot.port}", slack.signing_secret, event_callback(event))
            assert status == 200
            state = await slack.wait_for(
                lambda f: f.assistant_threads.get(("D5", "1700000000.000500"), {}).get("suggested_prompts")
            )
    assert 3 <= len(state) <= 4
    assert all(p["title"] and p["message"] for p in state)


def test_suggested_prompts_in_chinese() -> None:
    from bot.slack.assistant import build_suggested_prompts

    prompts = build_suggested_prompts(["设备接入与心跳设计"], lang="zh")
    assert prompts[0].title == "讲讲“设备接入与心跳设计”" and "总结我们的文档" in prompts[0].message
    assert prompts[1].title == "别让慢依赖拖垮我们" and len(prompts) == 4
