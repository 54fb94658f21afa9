"""Bad input never reaches a listener, never answers 500 and never logs an ERROR (issue #12).

HTTP mode: the table in `tests/fakes/hostile.py` (forged, malformed and odd-shaped requests) is
fired at the running bot; Socket Mode: frames and envelopes of odd shapes. Afterwards the bot is
healthy and still answers a real mention.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest

from bot.slack.intake import EVENT_LABELS, body_problem, request_label
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.hostile import build_cases, fire
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event, message_event
from tests.helpers import wait_answers

# A signed body that is not UTF-8 cannot be verified (slack_sdk hashes text): 401 rather than 400.
EXPECTED = {"unsigned": {401}, "malformed": {400, 401}, "odd-shaped": {200}}


def url(bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


def metric(text: str, name: str, label: str) -> float:
    prefix = f"{name}{{{label}}} "
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def read_metrics(bot) -> str:
    async with aiohttp.ClientSession() as session, session.get(url(bot) + "/metrics") as resp:
        return await resp.text()


async def test_malformed_bodies_get_4xx_and_the_bot_still_answers(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    cases = build_cases(slack.signing_secret)
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        async with aiohttp.ClientSession() as session:
            results = [
                (case, *await fire(session, url(bot) + "/slack/events", slack.signing_secret, case)) for case in cases
            ]
            async with session.get(url(bot) + "/healthz") as resp:
                assert resp.status == 200
        wrong = [(case.group, case.name, status) for case, status, _ in results if status not in EXPECTED[case.group]]
        assert wrong == []
        assert not [case.name for case, _, text in results if "Traceback" in text or 'File "' in text]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not [r for r in caplog.records if "Unhandled request" in r.getMessage()]  # Bolt never saw them

        text = await read_metrics(bot)
        groups = {g: sum(c.group == g for c in cases) for g in EXPECTED}
        rejected = metric(text, "archbot_requests_rejected_total", 'reason="malformed"') + metric(
            text, "archbot_requests_rejected_total", 'reason="unsigned"'
        )
        assert rejected == groups["unsigned"] + groups["malformed"]
        # Every signed odd shape was acked and then either ignored (counted, whatever the reason) or, when it
        # still was a complete question, queued: nothing fell through uncounted.
        ignored = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("archbot_events_ignored_total{")
        )
        queued_c9 = len(bot.store.query("SELECT id FROM jobs WHERE channel='C9'"))
        assert metric(text, "archbot_events_ignored_total", 'reason="malformed"') >= 20
        assert ignored + queued_c9 == groups["odd-shaped"]
        labels = {
            line.split('type="', 1)[1].split('"', 1)[0]
            for line in text.splitlines()
            if line.startswith("archbot_events_received_total{")
        }
        assert labels <= set(EVENT_LABELS) and "other" in labels  # unknown types made no new series

        parent = slack.add_message("C1", "<@UBOT> still answering after all that?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        answers = await wait_answers(slack, "C1", parent.ts)
        assert len(answers) == 1
        # Only the well-formed mentions in the table became jobs: none of the odd shapes did.
        assert {j["channel"] for j in bot.store.query("SELECT channel FROM jobs")} <= {"C1", "C9"}


async def test_socket_mode_odd_frames_are_acked_and_ignored(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    async with running_bot(bot_settings(tmp_path, slack, model, socket_mode=True)) as bot:
        await asyncio.wait_for(slack.socket_connected.wait(), 5)
        await slack.socket_send_raw("{not json")
        await slack.socket_send_raw("[1, 2, 3]")
        for i, payload in enumerate([[1, 2], 42, None, "a string"]):
            await slack.socket_send_raw(
                json.dumps({"envelope_id": f"odd-{i}", "type": "events_api", "payload": payload})
            )
            await slack.wait_for_ack(f"odd-{i}")
        odd_events = [
            {**event_callback({"type": "message"}), "event": "message"},
            {**event_callback({"type": "message"}), "event": [1]},
            event_callback(message_event("<@UBOT> hi", channel="C1", user="U1", ts="1.1") | {"channel": 5}),
            event_callback(mention_event("<@UBOT> hi", channel="C1", user="U1", ts="1.2") | {"user": ["U1"]}),
            event_callback({"type": "never_seen_event"}),
            {"type": "block_actions", "actions": "not a list", "user": {"id": "U1"}},
            {"type": "view_submission", "view": {"private_metadata": "{broken"}, "user": {"id": "U1"}},
        ]
        for payload in odd_events:
            envelope = await slack.socket_send_event(payload)
            await slack.wait_for_ack(envelope)
        parent = slack.add_message("C1", "<@UBOT> and over the socket?", user="U1")
        await slack.socket_send_event(event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts)))
        assert len(await wait_answers(slack, "C1", parent.ts)) == 1
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        text = await read_metrics(bot)
        assert metric(text, "archbot_events_ignored_total", 'reason="malformed"') >= 10
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (event_callback(mention_event("<@UBOT> hi", channel="C1", user="U1", ts="1.1")), None),
        ({"type": "event_callback", "event": "message"}, "malformed"),
        (event_callback({"type": "message", "channel": 1, "user": "U1", "ts": "1.1"}), "malformed"),
        (event_callback({"type": "message", "channel": "C1", "text": "\ud800"}), "malformed"),
        (event_callback({"type": "reaction_added"}), "unsupported"),
        ({"command": "/arch-review", "text": "x", "channel_id": "C1", "user_id": "U1"}, "malformed"),
        ({"type": "view_submission", "view": {"private_metadata": "[1]"}, "user": {"id": "U1"}}, "malformed"),
        ({"type": ["event_callback"]}, "malformed"),
        ([1, 2], "malformed"),
    ],
)
def test_body_problem(body, problem):
    assert body_problem(body) == problem


def test_request_label_is_bounded():
    assert request_label(event_callback({"type": "app_mention"})) == "app_mention"
    assert request_label(event_callback({"type": "never_seen"})) == "other"
    assert request_label({"command": "/other-command"}) == "other"
    assert request_label({"type": {"a": 1}}) == "other"
