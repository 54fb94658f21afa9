"""Stopping the bot with a job mid-answer while Slack has gone away or stopped answering.

`Bot.stop()` gives running jobs ARCHBOT_SHUTDOWN_GRACE seconds, then cancels what is left and puts
it back in the queue. A cancelled job makes no more Slack calls (the calls it was waiting on are
abandoned with it), so stop returns and leaves nothing of the job running behind it; the next
start resumes the job once: it stops the stream the first run left open and edits that message
into the answer. The bound on `stop()` here is a generous wait (a hang fails), not a speed check.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.runtime import Bot
from bot.store import Store
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import answers_in, wait_answers

STOP_BOUND = 60.0  # far above grace + margin: only a stop that hangs trips it
# Every Web API method a job calls on its way to an answer.
JOB_METHODS = (
    "chat.postMessage",
    "chat.update",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "conversations.replies",
    "conversations.history",
    "conversations.info",
    "users.info",
    "reactions.add",
    "reactions.remove",
    "assistant.threads.setStatus",
)
JOB_TASKS = ("job-", "flush-", "steps-", "channel-type-")


def job_tasks() -> list[str]:
    """The bot's tasks for one job (the job, its reply's flusher and steps, its channel lookup) still running."""
    return sorted(t.get_name() for t in asyncio.all_tasks() if not t.done() and t.get_name().startswith(JOB_TASKS))


@pytest.mark.parametrize("socket_mode", [False, True], ids=["http", "socket"])
@pytest.mark.parametrize("slack_fault", ["gone", "hung"])
async def test_stop_with_slack_away_mid_answer_requeues_the_job_and_the_next_start_answers_once(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, slack_fault: str, socket_mode: bool
) -> None:
    model.pause()
    bot = Bot(bot_settings(tmp_path, slack, model, socket_mode=socket_mode))
    await bot.start(index=False)
    stopped = False
    try:
        parent = slack.add_message("C1", "<@UBOT> how do we keep a slow downstream from taking us down?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        if socket_mode:  # the Socket Mode connection is closed at stop too, with Slack away
            await slack.wait_for_ack(await slack.socket_send_event(payload))
        else:
            assert (await post_event(f"http://127.0.0.1:{bot.port}", slack.signing_secret, payload))[0] == 200
        await model.wait_for_count(1)  # the model is writing the answer
        # The reply exists (the work's steps opened its stream) and the job knows it.
        reply_ts = await slack.wait_for(lambda f: (lambda j: j and j.reply_ts)(bot.store.get_job(1)))
        if slack_fault == "gone":
            await slack.stop()  # every call is refused from now on
        else:
            gates = [slack.hold(method) for method in JOB_METHODS]  # every call waits, unanswered
        model.resume()  # the answer arrives; showing it needs Slack
        if slack_fault == "hung":
            await slack.wait_for(lambda f: f.held_calls)  # the job is waiting on Slack
        await asyncio.wait_for(bot.stop(), STOP_BOUND)
        stopped = True
        assert job_tasks() == []  # nothing of the job runs on after stop (it would post when Slack is back)
        store = Store(tmp_path / "archbot.db")  # the bot's own is closed
        try:
            job = store.get_job(1)
            lease = store.query("SELECT lease_until FROM jobs WHERE id=1")
        finally:
            store.close()
        assert job is not None and job.state == "queued" and job.attempts == 0 and job.reply_ts == reply_ts
        assert lease == [{"lease_until": None}]  # released: another replica may take it at once
    finally:
        if not stopped:
            await bot.stop()

    # Slack is back: the next start resumes the job once, in the message the first run opened.
    if slack_fault == "gone":
        await slack.start()
    else:
        for gate in gates:
            gate.set()
    async with running_bot(bot_settings(tmp_path, slack, model, socket_mode=socket_mode)) as again:
        answers = await wait_answers(slack, "C1", parent.ts)
        await slack.wait_for(lambda f: again.store.job_counts() == {"done": 1})
    assert [a.ts for a in answers] == [reply_ts]
    assert [m.ts for m in slack.bot_messages("C1")] == [reply_ts]  # no second reply, no failure notice
    assert len(answers_in(slack, "C1", parent.ts)) == 1
    assert [c.args.get("ts") for c in slack.calls_to("chat.stopStream")][:1] == [reply_ts]
    assert len(model.message_requests) >= 2  # asked again on resume
