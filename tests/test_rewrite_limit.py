"""The query rewrite goes through the answers' adaptive concurrency limit (bot/architect/limit.py).

The bot's rewrites are real requests of the anthropic SDK to the fake API, sent on the bot's
event loop through the same limit as the answers: they count against it, a 429 on one shrinks
it, and a rewrite that gets no slot in time is not sent while the answer still comes.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest

from bot.architect.limit import AdaptiveLimit
from bot.config import Settings
from bot.retrieval import ModelRewriter, build_searcher, index_sources
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import DEFAULT_API_KEY, FakeAnthropic, RecordedRequest, Reply, ScriptedError, default_reply
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import FAILURE_MARK, all_answers, wait_answers

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "docs"
REWRITE = "cache penetration, lookups of nonexistent ids\n缓存穿透 不存在的用户 ID 空值\n"


def is_rewrite(body: dict) -> bool:
    return not body.get("stream") and "rewrite a question" in str(body.get("system", ""))


def rewrites(model: FakeAnthropic) -> list[RecordedRequest]:
    return [r for r in model.message_requests if r.body is not None and is_rewrite(r.body)]


def answering(body: dict) -> Reply:
    return Reply(text=REWRITE) if is_rewrite(body) else default_reply(body)


@pytest.fixture
def indexed(tmp_path: Path) -> Settings:
    """An index of the fixture docs (a search with nothing indexed asks for no rewrite)."""
    docs = tmp_path / "team-docs"
    shutil.copytree(FIXTURES, docs)
    settings = Settings(db_path=tmp_path / "archbot.db", docs=[docs])
    index_sources(settings)
    return settings


def config(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, indexed: Settings, **overrides: object) -> Settings:
    return bot_settings(
        tmp_path, slack, model, query_rewrite=True, db_path=indexed.db_path, docs=indexed.docs, **overrides
    )


async def mention(bot_port: int, slack: FakeSlack, text: str) -> str:
    message = slack.add_message("C1", f"<@UBOT> {text}", user="U1")
    payload = event_callback(mention_event(message.text, channel="C1", user="U1", ts=message.ts))
    assert (await post_event(f"http://127.0.0.1:{bot_port}", slack.signing_secret, payload))[0] == 200
    return message.ts


async def test_rewrites_count_against_the_limit(tmp_path: Path, slack: FakeSlack, indexed: Settings) -> None:
    """Rewrites on, a limit of 4: the model never sees more requests at once than that. The
    rewrites are slower than searches wait for them, so each job's answer would go out while its
    rewrite is still on the way: two requests a job, were the rewrite not counted. A burst's jobs
    keep their answers' slots (the rewrites take what is left); a lone question's rewrite is sent."""

    def slow_rewrites(body: dict) -> Reply:
        return Reply(text=REWRITE, delay_first_token=1.0) if is_rewrite(body) else default_reply(body)

    async with FakeAnthropic(first_token_latency=0.3) as model:  # no cap of its own: the bot's limit is watched
        model.default_reply = slow_rewrites
        async with running_bot(config(tmp_path, slack, model, indexed, concurrency=4, rewrite_wait=0.2)) as bot:
            question = "how long do cached profiles live?"
            asked = list(await asyncio.gather(*(mention(bot.port or 0, slack, f"{i}: {question}") for i in range(8))))
            await slack.wait_for(lambda f: a if len(a := all_answers(f)) >= 8 else None, timeout=60)
            asked.append(await mention(bot.port or 0, slack, "and how long do cached sessions live?"))
            answers = await slack.wait_for(lambda f: a if len(a := all_answers(f)) >= 9 else None, timeout=60)
            assert sorted(a.thread_ts for a in answers) == sorted(asked)
            assert not [a for a in answers if a.text.startswith(FAILURE_MARK)]
            await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 9})
            await slack.wait_for(lambda f: rewrites(model) or None)
        assert model.peak_in_flight <= 4  # rewrites included


async def test_a_rewrite_refused_429_shrinks_the_limit(tmp_path: Path, slack: FakeSlack, indexed: Settings) -> None:
    """The model refuses every rewrite (429): the limit falls as for any refused request, and the
    answer comes without the rewrite."""
    async with FakeAnthropic() as model:

        def refuse_rewrites(body: dict) -> Reply:
            if is_rewrite(body):
                raise ScriptedError(
                    429, "rate_limit_error", "Number of concurrent requests has exceeded your rate limit."
                )
            return default_reply(body)

        model.default_reply = refuse_rewrites
        async with running_bot(config(tmp_path, slack, model, indexed, concurrency=8)) as bot:
            ts = await mention(bot.port or 0, slack, "people keep hammering us with ids that were never created")
            [answer] = await wait_answers(slack, "C1", ts)
            assert not answer.text.startswith(FAILURE_MARK)
            await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
            limit = bot.model_limit
            assert isinstance(limit, AdaptiveLimit)
            assert limit.overloads == len(rewrites(model)) >= 1  # each refused rewrite counted
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{bot.port}/metrics") as resp:
                text = await resp.text()
            gauge = next(line for line in text.splitlines() if line.startswith("archbot_model_concurrency_limit "))
            assert float(gauge.split()[1]) < 8  # shrunk below the ceiling by the rewrite's 429
            assert "archbot_model_overloaded_total" in text
        assert [r for r in model.message_requests if r.stream]  # the answer was asked for all the same


async def test_a_rewrite_without_a_slot_is_not_sent_and_the_answer_comes(
    tmp_path: Path, slack: FakeSlack, indexed: Settings
) -> None:
    """The limit fell to one slot (a 429), held by an answer being streamed: the next question's
    rewrite waits at most ARCHBOT_REWRITE_WAIT for a slot, is then dropped (never sent), and that
    question's search goes on without it: it is answered."""
    first_question = "people keep hammering us with ids that were never created"
    async with FakeAnthropic() as model:
        model.default_reply = answering
        # The first question's rewrite is cached already (asked before): its job sends only its answer.
        earlier = build_searcher(
            Settings(
                db_path=indexed.db_path,
                docs=indexed.docs,
                anthropic_api_key=DEFAULT_API_KEY,
                anthropic_base_url=model.base_url,
                query_rewrite=True,
            )
        )
        try:
            await asyncio.to_thread(earlier.search, first_question)
            assert isinstance(earlier.rewriter, ModelRewriter) and earlier.rewriter.cached(first_question)
        finally:
            earlier.close()
        model.reset()
        model.fail(429, times=1)  # the first answer's first try: the limit falls to one slot
        model.hold_streams()
        settings = config(tmp_path, slack, model, indexed, concurrency=2, rewrite_wait=0.3)
        async with running_bot(settings) as bot:
            limit = bot.model_limit
            assert isinstance(limit, AdaptiveLimit)
            first = await mention(bot.port or 0, slack, first_question)
            await model.wait_for_count(2)  # the refused try, then its retry
            assert limit.allowed == 1 and limit.in_flight == 1  # the retried answer holds the one slot
            second = await mention(bot.port or 0, slack, "how long do cached profiles live before they expire?")
            # The second answer queues for the slot once its search went on without the rewrite,
            # and that rewrite no longer waits for a slot.
            await slack.wait_for(lambda f: limit.waiting == (1, 0))
            model.release_streams()
            await wait_answers(slack, "C1", first)
            [answer] = await wait_answers(slack, "C1", second)
            assert not answer.text.startswith(FAILURE_MARK)
        assert rewrites(model) == []  # the second question's rewrite was never sent
        assert len([r for r in model.message_requests if r.stream]) == 3  # the refused try, its retry, the second
