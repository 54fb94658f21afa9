"""`archbot_ack_seconds` is timed where Slack's clock runs: the whole request, Bolt's work included.

Over HTTP the clock starts when the request reaches the web server's handler; over Socket Mode
when the envelope is read from the WebSocket. Each delivered event counts once, refused ones not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import wait_answers


def ack_samples(bot) -> dict[str, float]:
    for family in text_string_to_metric_families(bot.metrics.render().decode()):
        if family.name == "archbot_ack_seconds":
            return {s.name: s.value for s in family.samples if not s.name.endswith("_bucket")}
    return {}


async def test_http_ack_is_counted_once_per_request(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = slack.add_message("C1", "<@UBOT> what is a bulkhead?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        status, _ = await post_event(f"http://127.0.0.1:{bot.port}", slack.signing_secret, payload)
        assert status == 200
        samples = ack_samples(bot)
        assert samples["archbot_ack_seconds_count"] == 1
        assert samples["archbot_ack_seconds_sum"] > 0
        await wait_answers(slack, "C1", parent.ts)


async def test_socket_mode_ack_is_timed_from_the_envelope(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model, socket_mode=True)) as bot:
        await asyncio.wait_for(slack.socket_connected.wait(), 5)
        parent = slack.add_message("C1", "<@UBOT> what is a saga?", user="U1")
        envelope = await slack.socket_send_event(
            event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        )
        await slack.wait_for_ack(envelope, timeout=3)
        await wait_answers(slack, "C1", parent.ts)
        await slack.wait_for(lambda f: ack_samples(bot).get("archbot_ack_seconds_count") == 1)
