"""When Slack fails: no duplicate, no partial answer left alone, a short outage ridden out, a
resumed job closes its stream, a poison job ends (issue #12).

The fake Slack injects the failures (`fail(..., after_success=True)` for a 500 that still posted,
`seconds=` for an outage); the bot's retry window (`ARCHBOT_SLACK_RETRY_SECONDS`, 60 s in
production) is scaled down so the tests stay fast.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

from bot.slack.retry import MESSAGE_EVENT_TYPE
from bot.store import MAX_ATTEMPTS, Store
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import FAILURE_MARK, answers_in, message_text, wait_answers

WINDOW = 1.0  # seconds of Slack retries in these tests (60 in production)


def url(bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


async def mention(bot, slack: FakeSlack, text: str, *, channel: str = "C1"):
    message = slack.add_message(channel, text, user="U1")
    payload = event_callback(mention_event(message.text, channel=channel, user="U1", ts=message.ts))
    assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
    return message


def bot_replies(slack: FakeSlack, channel: str, thread_ts: str):
    return [m for m in slack.thread(channel, thread_ts) if m.bot_id == slack.bot_id]


def job_ids(bot) -> list[int]:
    return [row["id"] for row in bot.store.query("SELECT id FROM jobs ORDER BY id")]


async def test_post_that_failed_after_success_is_not_posted_twice(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
):
    slack.fail("chat.postMessage", status=500, times=1, after_success=True)
    settings = bot_settings(tmp_path, slack, model, stream_mode="update", slack_retry_seconds=WINDOW)
    async with running_bot(settings) as bot:
        parent = await mention(bot, slack, "<@UBOT> what is an outbox?")
        answers = await wait_answers(slack, "C1", parent.ts)
        replies = bot_replies(slack, "C1", parent.ts)
        assert len(replies) == 1 and replies == answers
        assert "what is an outbox?" in message_text(answers[0])
        # The job found its own message by its metadata rather than posting again.
        lookups = [c for c in slack.calls_to("conversations.replies") if c.args.get("include_all_metadata")]
        assert lookups
        [job_id] = job_ids(bot)
        assert replies[0].metadata == {"event_type": MESSAGE_EVENT_TYPE, "event_payload": {"job_id": job_id, "part": 0}}
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})


async def test_stream_start_that_failed_after_success_is_adopted(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
):
    slack.fail("chat.startStream", status=500, times=1, after_success=True)
    model.script(Reply(text="A streamed answer. " * 20, chunk_chars=40, chunk_delay=0.01))
    settings = bot_settings(tmp_path, slack, model, stream_mode="stream", slack_retry_seconds=WINDOW)
    async with running_bot(settings) as bot:
        parent = await mention(bot, slack, "<@UBOT> stream it")
        answers = await wait_answers(slack, "C1", parent.ts)
        replies = bot_replies(slack, "C1", parent.ts)
        assert len(replies) == 1 and replies == answers
        assert message_text(answers[0]).count("A streamed answer.") == 20
        assert replies[0].stream_state == "stopped"
        assert replies[0].metadata["event_payload"]["job_id"] == job_ids(bot)[0]


async def test_every_bot_message_names_its_job(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        first = await mention(bot, slack, "<@UBOT> one?")
        bare = await mention(bot, slack, "<@UBOT>")  # the help text
        await wait_answers(slack, "C1", first.ts)
        await slack.wait_for(lambda f: bot_replies(f, "C1", bare.ts))
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 2})
        ids = job_ids(bot)
        for thread, job_id in ((first.ts, ids[0]), (bare.ts, ids[1])):
            for message in bot_replies(slack, "C1", thread):
                assert message.metadata == {
                    "event_type": MESSAGE_EVENT_TYPE,
                    "event_payload": {"job_id": job_id, "part": 0},
                }


async def test_update_failing_ends_with_the_failure_notice(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    model.script(Reply(text="Half of an answer. " * 30, chunk_chars=30, chunk_delay=0.02))
    settings = bot_settings(tmp_path, slack, model, stream_mode="update", slack_retry_seconds=0.3)
    async with running_bot(settings) as bot:
        parent = await mention(bot, slack, "<@UBOT> explain sagas")
        await slack.wait_for(lambda f: bot_replies(f, "C1", parent.ts))  # the partial answer is shown
        slack.fail("chat.update", status=500, times=None)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"failed": 1}, timeout=15)
        replies = bot_replies(slack, "C1", parent.ts)
        assert len(replies) == 2
        assert replies[0].text.endswith("▍") or message_text(replies[0]).endswith("▍")  # could not be edited...
        assert replies[1].text.startswith(FAILURE_MARK)  # ...so the notice follows it
        assert replies[1].metadata["event_payload"]["part"] == "failure"


async def test_stream_append_and_update_failing_end_with_the_failure_notice(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
):
    model.script(Reply(text="Half of an answer. " * 30, chunk_chars=30, chunk_delay=0.02))
    settings = bot_settings(tmp_path, slack, model, stream_mode="auto", slack_retry_seconds=0.3)
    async with running_bot(settings) as bot:
        parent = await mention(bot, slack, "<@UBOT> explain sagas")
        await slack.wait_for(lambda f: bot_replies(f, "C1", parent.ts))
        slack.expire_streams(True)
        slack.fail("chat.update", status=503, times=None)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"failed": 1}, timeout=15)
        replies = bot_replies(slack, "C1", parent.ts)
        assert replies[-1].text.startswith(FAILURE_MARK)
        assert len(replies) == 2


async def test_a_spell_of_slack_5xx_is_ridden_out(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    # Production rides out 60 s; here 5 s of retries and a 2 s outage of every Slack method (longer
    # than slack_sdk's default handlers, two retries about a second apart, would survive).
    settings = bot_settings(tmp_path, slack, model, slack_retry_seconds=5.0)
    async with running_bot(settings) as bot:
        message = slack.add_message("C1", "<@UBOT> still there?", user="U1")
        slack.fail("*", status=503, seconds=2.0)
        payload = event_callback(mention_event(message.text, channel="C1", user="U1", ts=message.ts))
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        answers = await wait_answers(slack, "C1", message.ts, timeout=15)
        assert len(answers) == 1 and "still there?" in message_text(answers[0])
        assert len(bot_replies(slack, "C1", message.ts)) == 1
        assert [c for c in slack.calls if c.status == 503]  # the outage did hit the bot
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})


def seed_job(db_path: Path, *, channel: str, ts: str, text: str, attempts: int, reply_ts: str | None = None) -> int:
    """A job as a crashed process left it: running, owned by a pid that no longer exists."""
    store = Store(db_path)
    try:
        job_id = store.enqueue(
            kind="mention",
            channel=channel,
            ts=ts,
            thread_ts=ts,
            user="U1",
            text=text,
            channel_type="channel",
            team="T1",
        )
    finally:
        store.close()
    assert job_id is not None
    dead_owner = f"{socket.gethostname()}:{2**22 + os.getpid() % 1000}:deadbeef"
    with sqlite3.connect(db_path) as db:
        db.execute(
            "UPDATE jobs SET state='running', attempts=?, owner=?, lease_until=?, reply_ts=? WHERE id=?",
            (attempts, dead_owner, 4e9, reply_ts, job_id),
        )
    return job_id


async def test_resumed_job_stops_its_orphaned_stream(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    question = slack.add_message("C1", "<@UBOT> resume me?", user="U1")
    orphan = slack.add_message("C1", "Half an ans", user="UBOT", thread_ts=question.ts, bot_id=slack.bot_id)
    orphan.stream_state = "streaming"
    settings = bot_settings(tmp_path, slack, model, slack_retry_seconds=WINDOW)
    seed_job(settings.db_path, channel="C1", ts=question.ts, text=question.text, attempts=1, reply_ts=orphan.ts)
    async with running_bot(settings) as bot:
        answers = await wait_answers(slack, "C1", question.ts)
        stops = [c for c in slack.calls_to("chat.stopStream") if c.args.get("ts") == orphan.ts]
        assert stops, "the orphaned stream was stopped"
        assert orphan.stream_state == "stopped"
        assert answers == [orphan] and "resume me?" in message_text(orphan)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})


async def test_poison_job_is_capped(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    question = slack.add_message("C1", "<@UBOT> the question that kills the process", user="U1")
    partial = slack.add_message("C1", "Half an ans", user="UBOT", thread_ts=question.ts, bot_id=slack.bot_id)
    partial.stream_state = "streaming"
    settings = bot_settings(tmp_path, slack, model, slack_retry_seconds=WINDOW)
    job_id = seed_job(
        settings.db_path, channel="C1", ts=question.ts, text=question.text, attempts=MAX_ATTEMPTS, reply_ts=partial.ts
    )
    async with running_bot(settings) as bot:
        await slack.wait_for(lambda f: bot.store.job_counts() == {"failed": 1})
        job = bot.store.get_job(job_id)
        assert job is not None and job.attempts == MAX_ATTEMPTS + 1
        error = bot.store.query("SELECT error FROM jobs WHERE id=?", (job_id,))[0]["error"]
        assert error.startswith("poison")
        assert partial.text.startswith(FAILURE_MARK)  # the partial answer became the failure notice
        assert partial.stream_state == "stopped"
        assert answers_in(slack, "C1", question.ts) == [partial]
        assert model.message_requests == []  # never run again


async def test_resumed_job_finds_a_reply_it_never_recorded(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    # The crash came after Slack posted the first words but before their ts reached the database.
    question = slack.add_message("C1", "<@UBOT> crash between post and record?", user="U1")
    partial = slack.add_message("C1", "First words ▍", user="UBOT", thread_ts=question.ts, bot_id=slack.bot_id)
    settings = bot_settings(tmp_path, slack, model, slack_retry_seconds=WINDOW)
    job_id = seed_job(settings.db_path, channel="C1", ts=question.ts, text=question.text, attempts=1)
    partial.metadata = {"event_type": MESSAGE_EVENT_TYPE, "event_payload": {"job_id": job_id, "part": 0}}
    async with running_bot(settings) as bot:
        answers = await wait_answers(slack, "C1", question.ts)
        assert answers == [partial] and "crash between post and record?" in message_text(partial)
        assert len(bot_replies(slack, "C1", question.ts)) == 1
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        assert bot.store.get_job(job_id).reply_ts == partial.ts
