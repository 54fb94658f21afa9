"""The HTTP fast path for message events (`bot/server.py`): stored, then acked, without Bolt's dispatch.

A signed `app_mention`/`message` event is committed before its 200 is written; a forged one gets
401 and a body that is not a Slack request 400, before anything is stored; twins and Slack's
retries of one question give one job and one answer, also when they arrive at once and share a
commit; while shutting down (or with the database away) the event is refused with 503 so Slack
redelivers it; every other request (App Home here) still goes through Bolt to its listener.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.store import Store
from bot.store_async import AsyncStore, GroupCommit
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event, post_signed
from tests.fakes.slack import FakeSlack, app_home_opened_event, event_callback, mention_event, message_event
from tests.helpers import answers_in, wait_answers


def url(bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


def sample(bot, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(bot.metrics.render().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def test_a_mention_is_in_the_database_when_its_ack_arrives(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    model.pause()  # the job cannot finish: what is found below was written by the ack path
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = slack.add_message("C1", "<@UBOT> is this stored before the ack?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        status, _ = await post_event(url(bot), slack.signing_secret, payload)
        assert status == 200
        # Read at once, through a connection of our own: committed, not merely in the bot's memory.
        other = Store(tmp_path / "archbot.db")
        try:
            jobs = other.query("SELECT kind, channel, ts, text, event_id FROM jobs")
        finally:
            other.close()
        assert jobs == [
            {
                "kind": "mention",
                "channel": "C1",
                "ts": parent.ts,
                "text": parent.text,
                "event_id": payload["event_id"],
            }
        ]
        assert sample(bot, "archbot_ack_seconds_count") == 1
        model.resume()
        assert len(await wait_answers(slack, "C1", parent.ts)) == 1
        # The 👀 reaction came after the ack, from the follow-up work.
        assert [c.args.get("name") for c in slack.calls_to("reactions.add")][:1] == ["eyes"]


async def test_a_burst_with_twins_and_retries_is_stored_once_and_answered_once(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parents = [slack.add_message("C1", f"<@UBOT> burst question {i}", user="U1") for i in range(12)]
        deliveries = []
        for parent in parents:
            mention = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
            twin = event_callback(message_event(parent.text, channel="C1", user="U1", ts=parent.ts))
            deliveries += [
                post_event(url(bot), slack.signing_secret, mention),
                post_event(url(bot), slack.signing_secret, twin),
                post_event(url(bot), slack.signing_secret, mention, retry_num=1, retry_reason="http_timeout"),
            ]
        results = await asyncio.gather(*deliveries)  # all at once: they share commits
        assert [status for status, _ in results] == [200] * len(deliveries)
        jobs = bot.store.query("SELECT ts FROM jobs ORDER BY id")
        assert sorted(j["ts"] for j in jobs) == sorted(p.ts for p in parents)
        assert sample(bot, "archbot_events_ignored_total", reason="duplicate") == 2 * len(parents)
        assert sample(bot, "archbot_ack_seconds_count") == len(deliveries)  # one per acked request
        for parent in parents:
            await wait_answers(slack, "C1", parent.ts)
        await slack.wait_for(lambda f: bot.store.queue_depth() == 0)
        assert all(len(answers_in(slack, "C1", p.ts)) == 1 for p in parents)
        assert bot.store.job_counts() == {"done": len(parents)}


async def test_forged_and_malformed_message_events_store_nothing(tmp_path: Path, slack: FakeSlack) -> None:
    async with running_bot(bot_settings(tmp_path, slack)) as bot:
        parent = slack.add_message("C1", "<@UBOT> forged?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        assert (await post_event(url(bot), "not-the-signing-secret", payload))[0] == 401
        retry = await post_event(url(bot), "not-the-signing-secret", payload, retry_num=1)
        assert retry[0] == 401
        truncated = b'{"type": "event_callback", "event": {"type": "app_mention", "text": "<@UBOT> hi"'
        assert (await post_signed(url(bot), slack.signing_secret, truncated, "application/json"))[0] == 400
        listed = b'[{"type": "event_callback"}]'
        assert (await post_signed(url(bot), slack.signing_secret, listed, "application/json"))[0] == 400
        # Signed, of Slack's envelope, but an event of a shape Slack never sends: acked and ignored.
        odd = event_callback({"type": "app_mention", "channel": 7, "user": "U1", "ts": parent.ts, "text": "x"})
        assert (await post_event(url(bot), slack.signing_secret, odd))[0] == 200
        assert bot.store.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == 0
        assert sample(bot, "archbot_requests_rejected_total", reason="unsigned") == 2
        assert sample(bot, "archbot_requests_rejected_total", reason="malformed") == 2
        assert sample(bot, "archbot_events_ignored_total", reason="malformed") == 1
        assert sample(bot, "archbot_ack_seconds_count") == 1  # only the acked one is timed
        assert not slack.calls_to("reactions.add")


async def test_shutting_down_or_no_database_refuses_so_slack_redelivers(tmp_path: Path, slack: FakeSlack) -> None:
    async with running_bot(bot_settings(tmp_path, slack)) as bot:
        parent = slack.add_message("C1", "<@UBOT> arriving during shutdown", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        bot.deps.accepting = False
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 503
        bot.deps.accepting = True
        assert bot.store.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == 0
        assert sample(bot, "archbot_ack_seconds_count") == 0
        assert (await post_event(url(bot), slack.signing_secret, payload, retry_num=1))[0] == 200
        assert bot.store.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == 1
        # The redelivered question is answered before the bot stops (nothing left in flight at shutdown).
        await slack.wait_for(lambda f: set(bot.store.job_counts()) <= {"done", "failed"} and bot.store.job_counts())


async def test_other_events_still_reach_bolts_listeners(tmp_path: Path, slack: FakeSlack) -> None:
    async with running_bot(bot_settings(tmp_path, slack)) as bot:
        opened = event_callback(app_home_opened_event(user="U7", channel="D7"))
        chatter = slack.add_message("C1", "just chatting, no mention", user="U2")
        plain = event_callback(message_event(chatter.text, channel="C1", user="U2", ts=chatter.ts))
        statuses = await asyncio.gather(
            post_event(url(bot), slack.signing_secret, opened), post_event(url(bot), slack.signing_secret, plain)
        )
        assert [status for status, _ in statuses] == [200, 200]
        await slack.wait_for(lambda f: f.home_views.get("U7"))  # Bolt's app_home_opened listener ran
        assert sample(bot, "archbot_events_ignored_total", reason="not_for_us") == 1
        assert sample(bot, "archbot_events_received_total", type="app_home_opened") == 1
        assert sample(bot, "archbot_events_received_total", type="message") == 1
        assert bot.store.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == 0
        async with aiohttp.ClientSession() as session, session.get(url(bot) + "/healthz") as resp:
            assert resp.status == 200


async def test_concurrent_enqueues_share_commits_and_keep_dedupe(tmp_path: Path) -> None:
    astore = AsyncStore(Store(tmp_path / "archbot.db"))
    try:
        commits = GroupCommit(astore.quick)

        def job(ts: str) -> dict[str, str]:
            return {"kind": "mention", "channel": "C1", "ts": ts, "thread_ts": ts, "user": "U1", "text": f"q {ts}"}

        stamps = [f"1700000000.{i:06d}" for i in range(20)]
        ids = await asyncio.gather(*(commits.enqueue(**job(ts)) for ts in [*stamps, stamps[3], stamps[7]]))
        assert len({i for i in ids[:20]}) == 20 and None not in ids[:20]
        assert ids[20:] == [None, None]  # a duplicate in the same commit as its original
        assert await commits.enqueue(**job(stamps[0])) is None  # and one after it
        assert astore.sync.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == 20
        assert astore.sync.is_bot_thread("C1", stamps[5])
    finally:
        astore.close()
