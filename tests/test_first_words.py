"""What stands between a claimed question and its first words, kept off the way: the work's steps in a
streamed reply (bot/slack/post.py `ReplyPoster.step`) never hold up the work, go out in order (the
ones that queue up meanwhile in one call) and before the answer's text; the first words go out
before the model side goes on; a burst in one channel looks its kind up once. A slow Slack is the
fake's `hold`, released on cue: no sleeps."""

from __future__ import annotations

import asyncio

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.context import ChannelKinds
from bot.slack.post import ReplyPoster
from tests.fakes.slack import FakeSlack

FINAL = ("A bulkhead isolates failures.", [{"type": "markdown", "text": "A bulkhead isolates failures."}])


def _chunks(call) -> list[tuple[str, str]]:
    return [(c["id"], c["status"]) for c in call.args.get("chunks") or [] if c.get("type") == "task_update"]


async def test_steps_do_not_wait_for_slack_and_go_out_in_order(slack: FakeSlack) -> None:
    question = slack.add_message("C1", "<@UBOT> what is a bulkhead?", user="U1")
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    stored: list[str] = []

    async def remember(ts: str) -> None:
        stored.append(ts)

    poster = ReplyPoster(
        client,
        channel="C1",
        thread_ts=question.ts,
        mode="stream",
        recipient_user_id="U1",
        recipient_team_id="T1",
        on_first_post=remember,
    )
    gate = slack.hold("chat.startStream")  # Slack is slow to open the stream
    await poster.step("thread", "Reading the thread", "in_progress")
    await poster.step("thread", "Reading the thread", "complete")
    await poster.step("search", "Searching the docs", "in_progress")
    # Each step returned without Slack having answered: the work went on.
    assert slack.calls_to("chat.startStream") == [] and poster.ts is None
    gate.set()
    await poster.settle()
    assert stored == [poster.ts]  # the stream the steps opened is remembered (a resumed job edits it)
    await poster.step("search", "Searching the docs", "complete")
    await poster.update("A bulkhead isolates ")
    await poster.finish([FINAL])

    [start] = slack.calls_to("chat.startStream")
    assert _chunks(start) == [("thread", "in_progress")]
    appends = slack.calls_to("chat.appendStream")
    # The two steps that queued up while the stream was being opened: one call, in order.
    assert _chunks(appends[0]) == [("thread", "complete"), ("search", "in_progress")]
    assert _chunks(appends[1]) == [("search", "complete")]
    assert all(not _chunks(a) for a in appends[2:]) and appends[2].args.get("markdown_text")
    answer = slack.message("C1", poster.ts)
    assert answer is not None
    assert {t["status"] for t in answer.tasks().values()} == {"complete"}


async def test_the_first_words_go_out_before_the_model_side_goes_on(slack: FakeSlack) -> None:
    slack.add_channel("D1", is_im=True, user="U1")
    question = slack.add_message("D1", "what is a bulkhead?", user="U1")
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    poster = ReplyPoster(client, channel="D1", thread_ts=question.ts, mode="stream")
    await poster.update("A bulkhead isolates ")
    # By the time update() returned, the first words were sent (not merely scheduled).
    assert [c.args.get("markdown_text") for c in slack.calls_to("chat.startStream")] == ["A bulkhead isolates"]
    await poster.finish([FINAL])


async def test_a_burst_in_one_channel_asks_slack_its_kind_once(slack: FakeSlack) -> None:
    slack.add_channel("C7", name="design")
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    kinds = ChannelKinds(client)
    # Five jobs in that channel ask at once (all before Slack can answer the first).
    assert await asyncio.gather(*(kinds.kind("C7") for _ in range(5))) == ["channel"] * 5
    assert await kinds.kind("C7") == "channel"  # remembered
    assert len(slack.calls_to("conversations.info")) == 1
