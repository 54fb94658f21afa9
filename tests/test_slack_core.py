"""Core behaviour end to end: real Bolt, slack_sdk and anthropic clients against the fakes.

Each test starts the bot (`bot.runtime.Bot`) on port 0, delivers events the way Slack does
(signed HTTP POSTs or Socket Mode envelopes) and asserts what the fake Slack received and what
the fake model was sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event, message_event
from tests.helpers import all_answers, answers_in, message_text, wait_answers


def url(bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


async def mention(bot, slack: FakeSlack, text: str, *, channel: str = "C1", user: str = "U1"):
    """A person's top-level mention of the bot, delivered as a signed Events API POST; returns the message."""
    message = slack.add_message(channel, text, user=user)
    payload = event_callback(mention_event(message.text, channel=channel, user=user, ts=message.ts))
    status, _ = await post_event(url(bot), slack.signing_secret, payload)
    assert status == 200
    return message


def user_texts(request_body: dict) -> str:
    """Every text the model was sent in user/assistant turns, joined."""
    out = []
    for message in request_body.get("messages", []):
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
            continue
        for block in content:
            if block.get("type") == "text":
                out.append(block["text"])
    return "\n".join(out)


async def test_mention_over_http_answers_in_the_thread(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = slack.add_message("C1", "<@UBOT> how should device events reach notifications?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        status, _ = await post_event(url(bot), slack.signing_secret, payload)
        assert status == 200
        answers = await wait_answers(slack, "C1", parent.ts)
        assert len(answers) == 1
        assert answers[0].thread_ts == parent.ts
        assert "how should device events reach notifications?" in message_text(answers[0])
        request = model.message_requests[-1]
        assert "how should device events reach notifications?" in user_texts(request.body)
        assert "<@UBOT>" not in user_texts(request.body)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})


async def test_mention_over_socket_mode(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model, socket_mode=True)):
        await asyncio.wait_for(slack.socket_connected.wait(), 5)
        parent = slack.add_message("C1", "<@UBOT> what is a saga?", user="U1")
        envelope = await slack.socket_send_event(
            event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        )
        await slack.wait_for_ack(envelope, timeout=3)
        answers = await wait_answers(slack, "C1", parent.ts)
        assert len(answers) == 1
        assert "what is a saga?" in message_text(answers[0])


async def test_dm_needs_no_mention(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    slack.add_channel("D1", is_im=True, user="U1")
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        msg = slack.add_message("D1", "which broker do we use?", user="U1")
        payload = event_callback(message_event(msg.text, channel="D1", user="U1", ts=msg.ts, channel_type="im"))
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        answers = await wait_answers(slack, "D1", msg.ts)
        assert "which broker do we use?" in message_text(answers[0])
        starts = slack.calls_to("chat.startStream")
        assert all("recipient_user_id" not in c.args for c in starts)


async def test_followup_without_mention_uses_the_whole_thread(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await mention(bot, slack, "<@UBOT> should billing use an outbox?", channel="C1")
        await wait_answers(slack, "C1", parent.ts)
        reply = slack.add_message("C1", "and what about retries?", user="U2", thread_ts=parent.ts)
        payload = event_callback(message_event(reply.text, channel="C1", user="U2", ts=reply.ts, thread_ts=parent.ts))
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        await wait_answers(slack, "C1", parent.ts, n=2)
        sent = [r.body for r in model.message_requests if r.body and r.body.get("stream")][-1]  # the answer request
        roles = [m["role"] for m in sent["messages"]]
        assert roles[0] == "user" and "assistant" in roles and roles[-1] == "user"
        text = user_texts(sent)
        assert "should billing use an outbox?" in text and "and what about retries?" in text


async def test_ignores_bots_edits_and_foreign_threads(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        foreign = slack.add_message("C1", "a thread without the bot", user="U1")
        events = [
            message_event("hello from another app", channel="C1", user="U9", ts="1700000001.000001", bot_id="B9"),
            message_event("legacy bot", channel="C1", user=None, ts="1700000001.000002", subtype="bot_message"),
            message_event("my own echo", channel="C1", user="UBOT", ts="1700000001.000003", bot_id="BBOT"),
            message_event(
                "reply in a thread never joined",
                channel="C1",
                user="U2",
                ts="1700000001.000004",
                thread_ts=foreign.ts,
            ),
            message_event("top-level chatter", channel="C1", user="U2", ts="1700000001.000005"),
            {**message_event("edited", channel="C1", user="U2", ts="1700000001.000006"), "subtype": "message_changed"},
        ]
        for event in events:
            status, _ = await post_event(url(bot), slack.signing_secret, event_callback(event))
            assert status == 200
        # A real question afterwards is answered: proof the ignored ones were processed first.
        parent = await mention(bot, slack, "<@UBOT> ping", channel="C2")
        await wait_answers(slack, "C2", parent.ts)
        assert len(all_answers(slack)) == 1
        assert bot.store.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == 1


async def test_forged_stale_and_unsigned_requests_get_401(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        payload = event_callback(mention_event("<@UBOT> hi", channel="C1", user="U1", ts="1700000002.000001"))
        assert (await post_event(url(bot), "wrong-secret", payload))[0] == 401
        stale = int(time.time()) - 600
        assert (await post_event(url(bot), slack.signing_secret, payload, timestamp=stale))[0] == 401
        async with aiohttp.ClientSession() as session:
            resp = await session.post(url(bot) + "/slack/events", data=json.dumps(payload))
            assert resp.status == 401
        assert bot.store.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == 0
        assert not model.message_requests


async def test_redeliveries_and_twins_yield_one_answer(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = slack.add_message("C1", "<@UBOT> one answer please", user="U1")
        mention = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        twin = event_callback(message_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        results = await asyncio.gather(
            post_event(url(bot), slack.signing_secret, mention),
            post_event(url(bot), slack.signing_secret, twin),
            post_event(url(bot), slack.signing_secret, mention, retry_num=1),
            post_event(url(bot), slack.signing_secret, mention, retry_num=2),
        )
        assert [status for status, _ in results] == [200, 200, 200, 200]
        await wait_answers(slack, "C1", parent.ts)
        # Let any stray duplicate surface: wait until the queue is empty, then count.
        await slack.wait_for(lambda f: bot.store.queue_depth() == 0)
        assert len(answers_in(slack, "C1", parent.ts)) == 1
        assert bot.store.job_counts() == {"done": 1}


async def test_model_overloaded_twice_then_fine(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    model.fail(status=529, times=2, error_type="overloaded_error")
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await mention(bot, slack, "<@UBOT> survive overload?", channel="C1")
        answers = await wait_answers(slack, "C1", parent.ts)
        assert len(answers) == 1 and "survive overload?" in message_text(answers[0])
        assert not answers[0].text.startswith(":warning:")


async def test_model_always_failing_gives_one_failure_then_recovers(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
):
    model.fail(status=500, times=50, error_type="api_error")
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await mention(bot, slack, "<@UBOT> will this fail?", channel="C1")
        answers = await wait_answers(slack, "C1", parent.ts, timeout=20)
        assert len(answers) == 1
        assert answers[0].text.startswith(":warning:")
        assert "Traceback" not in answers[0].text and "500" not in answers[0].text
        model.reset()
        second = await mention(bot, slack, "<@UBOT> and now?", channel="C1")
        later = await wait_answers(slack, "C1", second.ts)
        assert "and now?" in message_text(later[0])
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1, "failed": 1})


async def test_slack_rate_limits_on_post_and_update(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    slack.fail("chat.postMessage", status=429, times=2, retry_after=0)
    slack.fail("chat.update", status=429, times=2, retry_after=0)
    settings = bot_settings(tmp_path, slack, model, stream_mode="update")
    async with running_bot(settings) as bot:
        parent = await mention(bot, slack, "<@UBOT> rate limited?", channel="C1")
        answers = await wait_answers(slack, "C1", parent.ts)
        assert len(answers) == 1 and "rate limited?" in message_text(answers[0])
        failed = [c for c in slack.calls_to("chat.postMessage", include_failed=True) if c.failed]
        assert len(failed) == 2


async def test_expired_stream_falls_back_to_update(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    slack.expire_streams(True)
    model.script(Reply(text="A long answer. " * 40, chunk_chars=50))
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await mention(bot, slack, "<@UBOT> long one", channel="C1")
        answers = await wait_answers(slack, "C1", parent.ts)
        assert len(answers) == 1
        assert message_text(answers[0]).count("A long answer.") == 40
        assert slack.calls_to("chat.update")


async def test_forty_mentions_at_once(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parents = [slack.add_message("C1", f"<@UBOT> question {i}", user="U1") for i in range(40)]
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *[
                    post_event(
                        url(bot),
                        slack.signing_secret,
                        event_callback(mention_event(p.text, channel="C1", user="U1", ts=p.ts)),
                        session=session,
                    )
                    for p in parents
                ]
            )
        assert all(status == 200 for status, _ in results)
        await slack.wait_for(lambda f: len(all_answers(f)) >= 40, timeout=30)
        for p in parents:
            assert len(answers_in(slack, "C1", p.ts)) == 1


async def test_health_ready_and_metrics(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot, aiohttp.ClientSession() as session:
        async with session.get(url(bot) + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(url(bot) + "/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["checks"] == {"database": True, "slack": True, "workers": True}
        parent = await mention(bot, slack, "<@UBOT> metrics?", channel="C1")
        await wait_answers(slack, "C1", parent.ts)
        await slack.wait_for(lambda f: bot.store.queue_depth() == 0)
        async with session.get(url(bot) + "/metrics") as resp:
            text = await resp.text()
        assert 'archbot_jobs_total{outcome="answered"} 1.0' in text
        assert "archbot_ack_seconds_bucket" in text
        assert 'archbot_events_received_total{type="app_mention"} 1.0' in text


async def test_socket_mode_redelivery_yields_one_answer(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model, socket_mode=True)) as bot:
        await asyncio.wait_for(slack.socket_connected.wait(), 5)
        parent = slack.add_message("C1", "<@UBOT> asked twice?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        first = await slack.socket_send_event(payload)
        again = await slack.socket_send_event(payload, retry_attempt=1)  # Slack's redelivery
        await slack.wait_for_ack(first, timeout=3)
        await slack.wait_for_ack(again, timeout=3)
        await wait_answers(slack, "C1", parent.ts)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        assert len(answers_in(slack, "C1", parent.ts)) == 1
