"""Slack's agent messaging experience (#14): the manifest's `agent_view`, the DM opened as
`app_home_opened` with `tab == "messages"`, and the work's steps shown as tasks in the stream.

Real Bolt, slack_sdk and anthropic clients against the fakes; the fake Slack checks streams and
chunks the way Slack documents them (task_display_mode, task_update statuses, ...).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import MarkdownTextChunk, PlanUpdateChunk, TaskUpdateChunk
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import PROJECT_ROOT
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event
from tests.fakes.slack import (
    FakeSlack,
    app_home_opened_event,
    assistant_thread_started_event,
    event_callback,
    mention_event,
    message_event,
)
from tests.helpers import message_text, wait_answers


def url(bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


def test_manifest_uses_agent_view_with_a_description_and_prompts() -> None:
    manifest = yaml.safe_load((PROJECT_ROOT / "manifest.yml").read_text(encoding="utf-8"))
    features = manifest["features"]
    assert "assistant_view" not in features
    view = features["agent_view"]
    assert view["agent_description"].strip()
    assert view["suggested_prompts"] and all(p["title"] and p["message"] for p in view["suggested_prompts"])
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert "app_home_opened" in events and "message.im" in events
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True


async def test_app_home_opened_is_acked_before_any_slack_call(tmp_path: Path, slack: FakeSlack) -> None:
    gate = slack.hold("views.publish")  # Slack is slow to answer views.publish
    async with running_bot(bot_settings(tmp_path, slack)) as bot:
        payload = event_callback(app_home_opened_event(user="U7", channel="D7"))
        status, _ = await asyncio.wait_for(post_event(url(bot), slack.signing_secret, payload), timeout=5)
        assert status == 200  # acked while views.publish still waits
        await slack.wait_for(lambda f: f.held_calls.get("views.publish"))
        assert slack.calls_to("views.publish") == []
        gate.set()
        await slack.wait_for(lambda f: f.home_views.get("U7"))


async def test_agent_view_dm_flow(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic) -> None:
    """Open the DM (Messages tab) → prompts pinned on top; a message there → its own thread, with the
    work's steps streamed as a plan before the answer's text."""
    slack.add_channel("D1", is_im=True, user="U1")
    async with running_bot(bot_settings(tmp_path, slack, model, stream_mode="stream"), index=True) as bot:
        opened = event_callback(app_home_opened_event(user="U1", channel="D1", tab="messages"))
        assert (await post_event(url(bot), slack.signing_secret, opened))[0] == 200
        pinned = await slack.wait_for(lambda f: f.pinned_prompts.get("D1"))
        assert 3 <= len(pinned["suggested_prompts"]) <= 4
        assert slack.calls_to("views.publish") == []  # the Messages tab is not the Home tab
        [call] = slack.calls_to("assistant.threads.setSuggestedPrompts")
        assert "thread_ts" not in call.args

        # A prompt clicked, or typed: a top-level message in the DM.
        question = slack.add_message("D1", "How do we keep a slow downstream service from taking ours down?", user="U1")
        payload = event_callback(
            message_event(question.text, channel="D1", user="U1", ts=question.ts, channel_type="im")
        )
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        [answer] = await wait_answers(slack, "D1", question.ts)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})

    assert answer.thread_ts == question.ts  # each question is its own thread in the Messages tab
    assert "slow downstream" in str(model.message_requests[-1].body["messages"])
    [start] = slack.calls_to("chat.startStream")
    assert start.args["task_display_mode"] == "plan"
    assert "markdown_text" not in start.args  # the plan opens the reply, before any text
    assert [c["id"] for c in start.args["chunks"]] == ["thread"]
    tasks = answer.tasks()
    assert list(tasks) == ["thread", "search", "write"]
    assert {t["status"] for t in tasks.values()} == {"complete"}
    assert tasks["thread"]["title"] == "Reading the thread"
    assert tasks["search"]["title"] == "Searching the docs"
    assert tasks["write"]["title"] == "Writing the answer"
    hits = bot.deps.searcher.context(question.text, bot.settings.passage_tokens)  # what the job searched
    files = len({(h.source, h.path) for h in hits})
    assert tasks["search"]["output"] == f"{len(hits)} passages from {files} files"
    # The steps came before the text: the search ended before the first text was appended.
    appends = slack.calls_to("chat.appendStream")
    first_text = next(i for i, c in enumerate(appends) if c.args.get("markdown_text"))
    search_done = next(
        i
        for i, c in enumerate(appends)
        if any(ch.get("id") == "search" and ch.get("status") == "complete" for ch in c.args.get("chunks") or [])
    )
    assert search_done < first_text
    assert message_text(answer).strip()


async def test_steps_in_a_channel_stream_carry_the_recipient(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model, stream_mode="stream")) as bot:
        question = slack.add_message("C1", "<@UBOT> what is a bulkhead?", user="U1")
        payload = event_callback(mention_event(question.text, channel="C1", user="U1", ts=question.ts))
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        [answer] = await wait_answers(slack, "C1", question.ts)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    [start] = slack.calls_to("chat.startStream")
    assert start.args["recipient_user_id"] == "U1" and start.args["recipient_team_id"] == "T1"
    assert list(answer.tasks()) == ["thread", "search", "write"]


async def test_update_mode_shows_no_steps_and_still_answers(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model, stream_mode="update")) as bot:
        question = slack.add_message("C1", "<@UBOT> what is a bulkhead?", user="U1")
        payload = event_callback(mention_event(question.text, channel="C1", user="U1", ts=question.ts))
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        await wait_answers(slack, "C1", question.ts)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    assert slack.calls_to("chat.startStream", include_failed=True) == []


async def test_the_old_assistant_thread_event_still_gets_prompts(tmp_path: Path, slack: FakeSlack) -> None:
    slack.add_channel("D5", is_im=True, user="U5")
    async with running_bot(bot_settings(tmp_path, slack)) as bot:
        event = assistant_thread_started_event(channel="D5", user="U5", thread_ts="1700000000.000500")
        assert (await post_event(url(bot), slack.signing_secret, event_callback(event)))[0] == 200
        state = await slack.wait_for(lambda f: f.assistant_threads.get(("D5", "1700000000.000500")))
    assert state["suggested_prompts"]


# -- the fake accepts what Slack accepts and refuses the rest --------------------------------------
async def test_fake_streams_accept_slack_sdk_chunks_and_refuse_bad_ones(slack: FakeSlack) -> None:
    slack.add_channel("D1", is_im=True, user="U1")
    parent = slack.add_message("D1", "hello", user="U1")
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    start = await client.chat_startStream(
        channel="D1",
        thread_ts=parent.ts,
        task_display_mode="timeline",
        chunks=[PlanUpdateChunk(title="Plan"), TaskUpdateChunk(id="a", title="Step A", status="in_progress")],
    )
    await client.chat_appendStream(
        channel="D1",
        ts=start["ts"],
        chunks=[
            TaskUpdateChunk(id="a", title="Step A", status="complete", output="done"),
            MarkdownTextChunk(text="Hi"),
        ],
    )
    await client.chat_stopStream(channel="D1", ts=start["ts"])
    message = slack.message("D1", start["ts"])
    assert message.text == "Hi" and message.task_display_mode == "timeline"
    assert message.tasks() == {"a": {"id": "a", "title": "Step A", "status": "complete", "output": "done"}}

    bad_calls = [
        {"task_display_mode": "cards"},
        {"chunks": [{"type": "task_update", "id": "a", "title": "A", "status": "done"}]},
        {"chunks": [{"type": "task_update", "title": "A", "status": "pending"}]},
        {"chunks": [{"type": "task_update", "id": "a", "title": "A", "status": "pending", "output": "x" * 257}]},
        {"chunks": [{"type": "sparkles"}]},
    ]
    for extra in bad_calls:
        with pytest.raises(SlackApiError) as caught:
            await client.chat_startStream(channel="D1", thread_ts=parent.ts, **extra)
        assert caught.value.response["error"] == "invalid_arguments", extra

    # Prompts without a thread: only a DM has a Messages tab to pin them to.
    prompts = [{"title": "Hi", "message": "Hello"}]
    await client.assistant_threads_setSuggestedPrompts(channel_id="D1", prompts=prompts)
    assert slack.pinned_prompts["D1"]["suggested_prompts"] == prompts
    with pytest.raises(SlackApiError):
        await client.assistant_threads_setSuggestedPrompts(channel_id="C1", prompts=prompts)
