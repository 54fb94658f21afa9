"""The optional model rewrite of questions: used, cached, and never in the way when the model fails.

The real sync `anthropic.Anthropic` client talks to the fake API; searches run in a worker thread
(as the bot runs them), so the fake's event loop stays free to answer.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import anthropic
import pytest

from bot.config import Settings
from bot.retrieval import ModelRewriter, Searcher, build_searcher, index_sources
from bot.retrieval.rewrite import PROMPT_VERSION, normalise
from bot.retrieval.search import analyse, on_topic
from bot.types import Hit
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import DEFAULT_API_KEY, FakeAnthropic, Reply, default_reply, search_results
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import wait_answers

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "docs"
# An English question for a Chinese passage (zh/cache.md, 缓存穿透) that shares no glossary word
# with it: plain search cannot find it; the rewrite names it in Chinese.
QUESTION = "people keep hammering us with ids that were never created"
REWRITE = "cache penetration, lookups of nonexistent ids\n缓存穿透 不存在的用户 ID 空值\n"


@pytest.fixture
def settings(tmp_path: Path, model: FakeAnthropic) -> Settings:
    docs = tmp_path / "team-docs"
    shutil.copytree(FIXTURES, docs)
    settings = Settings(
        db_path=tmp_path / "archbot.db",
        docs=[docs],
        anthropic_api_key=DEFAULT_API_KEY,
        anthropic_base_url=model.base_url,
        query_rewrite=True,
    )
    index_sources(settings)
    return settings


async def team_paths(searcher: Searcher, query: str) -> list[tuple[str, str]]:
    hits: list[Hit] = await asyncio.to_thread(searcher.search, query, 30)
    return [(h.path, h.heading) for h in hits if h.source == "team-docs"]


async def test_rewrite_finds_the_other_language_and_is_cached(settings: Settings, model: FakeAnthropic) -> None:
    plain = Searcher(settings.db_path)
    assert "zh/cache.md" not in [p for p, _ in await team_paths(plain, QUESTION)]

    searcher = build_searcher(settings)
    assert isinstance(searcher.rewriter, ModelRewriter)
    model.script(Reply(text=REWRITE))
    try:
        found = await team_paths(searcher, QUESTION)
        assert found[0] == ("zh/cache.md", "缓存策略 > 缓存穿透")

        # What the model was asked: the question alone, with the configured model.
        assert len(model.message_requests) == 1
        body = model.message_requests[0].body
        assert body is not None
        assert body["model"] == settings.model
        assert body["messages"] == [{"role": "user", "content": QUESTION}]
        assert "Simplified Chinese" in body["system"]
        assert DEFAULT_API_KEY not in str(body)

        # The same question again (spelt a little differently): from the cache, no request.
        assert await team_paths(searcher, "  People keep hammering us with IDs that were never created ") == found
        assert len(model.message_requests) == 1
    finally:
        searcher.close()

    # The cache lives in the index database: a new process (a new Searcher) reuses it.
    again = build_searcher(settings)
    try:
        assert (await team_paths(again, QUESTION))[0][0] == "zh/cache.md"
        assert len(model.message_requests) == 1
    finally:
        again.close()
    stored = plain._conn().execute("SELECT key, value FROM ix_rewrites").fetchall()  # type: ignore[union-attr]
    assert stored == [(f"v{PROMPT_VERSION}:{settings.model}:{normalise(QUESTION)}", REWRITE.strip())]
    plain.close()


async def test_round_trips_outlive_the_process(settings: Settings, model: FakeAnthropic) -> None:
    """A new process (a new Searcher on the same index) starts from the round trips the last one saw,
    for the same model only, and not from old ones."""
    model.script(Reply(text=REWRITE))
    searcher = build_searcher(settings)
    try:
        await team_paths(searcher, QUESTION)
        for _ in range(200):  # bounded: kept by the rewrite's thread right after the search got it
            if rows(settings, "SELECT count(*) FROM ix_rewrite_latency")[0][0]:
                break
            await asyncio.sleep(0.02)
    finally:
        searcher.close()
    again = build_searcher(settings)
    try:
        assert again.rewrites is not None
        assert len(again.rewrites.latency.samples()) == 1
    finally:
        again.close()
    other = build_searcher(settings.model_copy(update={"model": "claude-haiku-4-5"}))
    assert other.rewrites is not None and other.rewrites.latency.samples() == []
    other.close()
    rows(settings, "UPDATE ix_rewrite_latency SET updated_at = updated_at - 2 * 86400")
    stale = build_searcher(settings)
    assert stale.rewrites is not None and stale.rewrites.latency.samples() == []
    stale.close()


def rows(settings: Settings, sql: str) -> list[tuple]:
    conn = sqlite3.connect(settings.db_path, isolation_level=None)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_model_failure_falls_back_to_plain_search(settings: Settings, model: FakeAnthropic) -> None:
    plain = Searcher(settings.db_path)
    expected = await team_paths(plain, "how long does the circuit breaker stay open for payments?")
    plain.close()
    assert expected[0][0] == "zh/billing.md"

    model.fail(500, times=10)
    searcher = build_searcher(settings)
    try:
        got = await team_paths(searcher, "how long does the circuit breaker stay open for payments?")
        assert got == expected
        assert len(model.message_requests) == 2  # one try and the client's one retry, then plain search

        # Resting after a failure: the next question does not wait on the model again.
        assert (await team_paths(searcher, "灰度发布放多少流量"))[0][0] == "en/release.md"
        assert len(model.message_requests) == 2
    finally:
        searcher.close()
    # Nothing was cached for a failed rewrite.
    conn = Searcher(settings.db_path)._conn()
    assert conn is not None and conn.execute("SELECT count(*) FROM ix_rewrites").fetchone()[0] == 0


async def test_empty_rewrite_is_cached_and_adds_nothing(settings: Settings, model: FakeAnthropic) -> None:
    model.script(Reply(text="   "))
    searcher = build_searcher(settings)
    plain = Searcher(settings.db_path)
    try:
        assert await team_paths(searcher, "怎么回滚") == await team_paths(plain, "怎么回滚")
        assert await team_paths(searcher, "怎么回滚") == await team_paths(plain, "怎么回滚")
        assert len(model.message_requests) == 1
    finally:
        searcher.close()
        plain.close()


async def test_reply_cut_short_is_used_but_not_cached(settings: Settings, model: FakeAnthropic) -> None:
    model.script(
        Reply(text="cache penetration, nonexistent ids\n缓存穿透", stop_reason="max_tokens"), Reply(text=REWRITE)
    )
    searcher = build_searcher(settings)
    try:
        assert (await team_paths(searcher, QUESTION))[0][0] == "zh/cache.md"
        assert (await team_paths(searcher, QUESTION))[0][0] == "zh/cache.md"  # asked again: the first was cut
        assert len(model.message_requests) == 2
        conn = searcher._conn()
        assert conn is not None
        assert [r[0] for r in conn.execute("SELECT value FROM ix_rewrites")] == [REWRITE.strip()]
    finally:
        searcher.close()


def test_no_key_no_rewriter(tmp_path: Path) -> None:
    searcher = build_searcher(Settings(db_path=tmp_path / "archbot.db"))
    assert searcher.rewriter is None
    assert searcher.search("anything") == []  # no index yet: nothing, and no model call either


async def test_slow_model_times_out_to_plain_search(settings: Settings, model: FakeAnthropic) -> None:
    client = anthropic.Anthropic(api_key=DEFAULT_API_KEY, base_url=model.base_url, timeout=0.3, max_retries=0)
    searcher = Searcher(
        settings.db_path, rewriter=ModelRewriter(client, model=settings.model, db_path=settings.db_path)
    )
    plain = Searcher(settings.db_path)
    model.pause()  # the model never answers in time
    try:
        assert await team_paths(searcher, "怎么回滚") == await team_paths(plain, "怎么回滚")
        assert len(model.message_requests) == 1
    finally:
        model.resume()
        searcher.close()
        plain.close()


def test_rewrite_is_on_with_a_key_and_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "archbot.db", anthropic_api_key=DEFAULT_API_KEY)
    assert isinstance(build_searcher(settings).rewriter, ModelRewriter)
    off = Settings(db_path=tmp_path / "archbot.db", anthropic_api_key=DEFAULT_API_KEY, query_rewrite=False)
    assert build_searcher(off).rewriter is None


async def test_a_late_rewrite_does_not_hold_the_search_and_serves_the_next_one(
    settings: Settings, model: FakeAnthropic
) -> None:
    """The rewrite runs beside the lexical search: past ARCHBOT_REWRITE_WAIT the search answers
    without it; when it lands, it is cached and the next search of the question uses it."""
    searcher = build_searcher(settings.model_copy(update={"rewrite_wait": 0.05}))
    plain = Searcher(settings.db_path)
    model.script(Reply(text=REWRITE))
    model.pause()  # the rewrite is still on its way when the search answers
    try:
        assert await team_paths(searcher, QUESTION) == await team_paths(plain, QUESTION)
        await model.wait_for(lambda r: r.path == "/v1/messages")  # it was asked, beside the search
        model.resume()
        assert isinstance(searcher.rewriter, ModelRewriter)
        for _ in range(200):  # wait (bounded) for the late rewrite to reach the cache
            if searcher.rewriter.cached(QUESTION) is not None:
                break
            await asyncio.sleep(0.02)
        assert searcher.rewriter.cached(QUESTION) == REWRITE.strip()
        assert (await team_paths(searcher, QUESTION))[0][0] == "zh/cache.md"
        assert len(model.message_requests) == 1
    finally:
        model.resume()
        searcher.close()
        plain.close()


async def test_a_mention_asks_for_its_rewrite_once_and_answers_with_it(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, settings: Settings
) -> None:
    """The job starts the rewrite when it claims the question (rewrite_wait.py); the search takes that
    one rather than asking again, and the passages it found through it reach the answer request."""
    def respond(body: dict) -> Reply:
        if not body.get("stream") and "rewrite a question" in str(body.get("system", "")):
            return Reply(text=REWRITE)
        return default_reply(body)

    model.default_reply = respond
    config = bot_settings(tmp_path, slack, model, query_rewrite=True, db_path=settings.db_path, docs=settings.docs)
    async with running_bot(config) as bot:
        question = slack.add_message("C1", f"<@UBOT> {QUESTION}", user="U1")
        payload = event_callback(mention_event(question.text, channel="C1", user="U1", ts=question.ts))
        assert (await post_event(f"http://127.0.0.1:{bot.port}", slack.signing_secret, payload))[0] == 200
        await wait_answers(slack, "C1", question.ts)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    rewrites = [r for r in model.message_requests if not r.stream and "rewrite a question" in str(r.body["system"])]
    assert [r.body["messages"] for r in rewrites] == [[{"role": "user", "content": QUESTION}]]
    [answer] = [r for r in model.message_requests if r.stream]
    assert "zh/cache.md" in [b["source"] for b in search_results(answer.body)]


# What a model (or a test double) may send back instead of the keyword lines asked for.
CANNED_ANSWER = (
    "## Recommendation\nStart with the simplest design that meets the need, measure, then add a queue.\n\n"
    "**Trade-offs**: more moving parts versus resilience.\n- Observability: metrics, logs and traces."
)
OFF_TOPIC = "order payment refund flow, invoices\n订单 支付 退款 发票\nOrderService"


@pytest.mark.parametrize("reply", [CANNED_ANSWER, OFF_TOPIC], ids=["canned-answer", "off-topic"])
async def test_a_reply_that_is_not_a_rewrite_of_the_question_is_not_searched(
    settings: Settings, model: FakeAnthropic, reply: str
) -> None:
    # Searched with the question, such text pulled the passages away from it (on the corpus, a
    # canned answer as the rewrite: design must-cite 0.78 -> 0.54). The search is the plain one.
    model.script(Reply(text=reply), Reply(text=reply))
    searcher = build_searcher(settings)
    plain = Searcher(settings.db_path)
    try:
        question = "缓存过期时间是多少"
        assert await team_paths(searcher, question) == await team_paths(plain, question)
        assert len(model.message_requests) == 1
        conn = searcher._conn()
        assert conn is not None
        cached = [r[0] for r in conn.execute("SELECT value FROM ix_rewrites")]
        # English prose with no Chinese line is not the shape asked for: cached as nothing, never asked
        # again; a bilingual reply about something else is kept but judged against each search.
        assert cached == ([""] if reply == CANNED_ANSWER else [OFF_TOPIC])
        assert await team_paths(searcher, question) == await team_paths(plain, question)
        assert len(model.message_requests) == 1
    finally:
        searcher.close()
        plain.close()


def test_on_topic_weighs_the_question_concepts_a_rewrite_restates() -> None:
    concepts = analyse("how long do cached profiles live before they expire?")
    for c in concepts:
        c.weight = 1.0
    assert on_topic(concepts, "cache expiry TTL of user profiles\n缓存 过期时间 用户资料\n")
    assert on_topic(concepts, "用户资料 缓存 过期\nprofile cache ttl")  # translations count too
    assert not on_topic(concepts, OFF_TOPIC)


async def test_pooled_search_ranks_with_the_rewrite_fetched_in_the_bot_process(
    settings: Settings, model: FakeAnthropic
) -> None:
    """`ARCHBOT_SEARCH_WORKERS`: the rewrite is asked for here (one model request, this process's
    client and cache) and the worker ranks the question with it."""
    from bot.retrieval.pool import PooledSearcher

    pooled = PooledSearcher(build_searcher(settings), workers=1)
    model.script(Reply(text=REWRITE))
    try:
        hits: list[Hit] = await asyncio.to_thread(pooled.context, QUESTION, 4000)
        assert "zh/cache.md" in [h.path for h in hits]
        assert len(model.message_requests) == 1
        found = await asyncio.to_thread(pooled.search, QUESTION, 30)  # cached: no second request
        team = [(h.path, h.heading) for h in found if h.source == "team-docs"]
        assert team[:1] == [("zh/cache.md", "缓存策略 > 缓存穿透")]
        assert len(model.message_requests) == 1
    finally:
        pooled.close()
