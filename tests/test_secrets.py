"""Secrets never leave the process: not in logs, Slack messages, model requests or the database.

The bot runs against the fakes with distinctive planted secrets (bot token, app token, signing
secret, Anthropic key) through a mention, a slash command, a feedback click, a forged request, a
model failure and Slack failures. Then everything observable is searched for them:

- logs: pytest's caplog at DEBUG, and the bot's own handler (`bot.logs.setup_logging`, JSON,
  level DEBUG) writing to a stream we hold;
- Slack: every Web API call's arguments and everything the fake stored (messages, ephemerals,
  views);
- the model: every recorded request (body, query, headers other than the key's own);
- SQLite: every row of every table, and the raw bytes of the database files.

Two kinds of runs: realistic failures, where caplog sees records *before* redaction (our code must
never put a secret in a record at all); and hostile upstreams that echo secrets back in error
bodies, where what must hold is that the redacted logs, Slack and the database stay clean.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bot import logs
from bot.config import Settings
from bot.runtime import Bot
from bot.slack.render import FEEDBACK_ACTION_ID
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event, post_interactive, post_slash_command
from tests.fakes.slack import (
    FakeSlack,
    block_actions_payload,
    event_callback,
    mention_event,
    slash_command_payload,
)
from tests.helpers import wait_answers

BOT_TOKEN = "xoxb-PLANTED-bot-5f1c9e27d4a8"
APP_TOKEN = "xapp-PLANTED-app-2b4c6d8e0f13"
SIGNING_SECRET = "PLANTEDsigning7c3b1a9e55d0"  # no recognisable prefix: only configuration can redact it
API_KEY = "sk-ant-PLANTED-key-9d8e7f6a5b41"
SECRETS = (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, API_KEY)
# The random tails too: a secret cut short or partly masked still gives itself away.
FRAGMENTS = ("5f1c9e27d4a8", "2b4c6d8e0f13", "7c3b1a9e55d0", "9d8e7f6a5b41")
NOISY_LOGGERS = ("anthropic", "httpx", "httpcore", "slack_sdk", "slack_bolt", "aiohttp.access", "jieba")


def leaks(text: str) -> list[str]:
    return [s for s in (*SECRETS, *FRAGMENTS) if s in text]


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def model() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=API_KEY)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


LogSetup = Callable[..., io.StringIO]


@pytest.fixture
def bot_logging(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[LogSetup]:
    """Configure the bot's logging as `archbot run` does (DEBUG, JSON) into a stream we hold, keep
    caplog attached at DEBUG, and put the process-wide logging state back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    saved_secrets = list(logs.redact.secrets)

    def setup(settings: Settings, *, caplog_sees_raw_records: bool) -> io.StringIO:
        stream = io.StringIO()
        caplog.set_level(logging.DEBUG)
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stderr", stream)  # setup_logging's handler binds to sys.stderr as it is now
            logs.setup_logging(level="DEBUG", fmt="json", secrets=settings.secrets())
        bot_handler = root.handlers[0]
        # The redaction filter rewrites each record in place, so the handler that runs first sees it
        # as our code (and the libraries) wrote it.
        root.handlers = [caplog.handler, bot_handler] if caplog_sees_raw_records else [bot_handler, caplog.handler]
        return stream

    yield setup
    root.handlers = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)
    logs.redact.secrets = saved_secrets


# -- where secrets could end up ------------------------------------------------------------------
def slack_surfaces(fake: FakeSlack) -> dict[str, str]:
    """Everything the bot sent Slack, and everything Slack keeps, as text."""
    out: dict[str, str] = {}
    for i, call in enumerate(fake.calls):
        out[f"call {i} {call.method}"] = json.dumps(call.args, default=str)
    for m in fake.bot_messages():
        out[f"message {m.channel}/{m.ts}"] = json.dumps([m.text, m.blocks, m.attachments, m.metadata, m.chunks])
    for i, e in enumerate(fake.ephemerals):
        out[f"ephemeral {i}"] = json.dumps([e.text, e.blocks], default=str)
    for view_id, view in {**fake.views, **fake.home_views}.items():
        out[f"view {view_id}"] = json.dumps(view, default=str)
    return out


def model_surfaces(fake: FakeAnthropic) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, request in enumerate(fake.requests):
        headers = {k: v for k, v in request.headers.items() if k not in ("x-api-key", "authorization")}
        out[f"request {i} {request.path}"] = json.dumps([request.body, request.query, headers], default=str)
    return out


def database_surfaces(db_path: Path) -> dict[str, str]:
    """Every row of every table (FTS shadow tables included), and the raw bytes of the files."""
    out: dict[str, str] = {}
    with sqlite3.connect(db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            out[f"table {table}"] = repr(rows)
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db_path}{suffix}")
        if path.exists():
            out[f"file {path.name}"] = path.read_bytes().decode("latin-1")
    return out


def assert_nowhere(surfaces: dict[str, str]) -> None:
    found = {where: leaks(text) for where, text in surfaces.items() if leaks(text)}
    assert not found, f"planted secrets found: {found}"


def caplog_surfaces(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    out = {"caplog text": caplog.text}
    for i, record in enumerate(caplog.records):
        out[f"record {i} {record.name}"] = repr(record.__dict__)
    return out


def url(bot: Bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


async def mention(bot: Bot, slack: FakeSlack, text: str, channel: str = "C1") -> str:
    parent = slack.add_message(channel, f"<@UBOT> {text}", user="U1")
    payload = event_callback(mention_event(parent.text, channel=channel, user="U1", ts=parent.ts))
    assert (await post_event(url(bot), SIGNING_SECRET, payload))[0] == 200
    return parent.ts


# -- the runs --------------------------------------------------------------------------------------
async def test_planted_secrets_never_leak(
    tmp_path: Path,
    slack: FakeSlack,
    model: FakeAnthropic,
    bot_logging: LogSetup,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = bot_settings(tmp_path, slack, model, anthropic_api_key=API_KEY)
    assert not leaks(repr(settings)) and not leaks(str(settings.model_dump()))
    stream = bot_logging(settings, caplog_sees_raw_records=True)
    async with running_bot(settings) as bot:
        # A forged request is refused before anything runs.
        forged = event_callback(mention_event("<@UBOT> hi", channel="C1", user="U1", ts="1700000050.000001"))
        assert (await post_event(url(bot), "not-the-secret", forged))[0] == 401

        # A mention, answered.
        ts = await mention(bot, slack, "how do we version events?")
        answer = (await wait_answers(slack, "C1", ts))[0]

        # A feedback click on it.
        click = block_actions_payload(
            action_id=FEEDBACK_ACTION_ID,
            value="up",
            user="U1",
            channel="C1",
            message_ts=answer.ts,
            thread_ts=ts,
            action_type="feedback_buttons",
        )
        assert (await post_interactive(url(bot), SIGNING_SECRET, click))[0] == 200

        # A slash command: a review in a new thread.
        fields = slash_command_payload("/arch-review", "Split billing into two services.", user="U1", channel="C1")
        assert (await post_slash_command(url(bot), SIGNING_SECRET, fields))[0] == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 2})

        # The model fails for good: a failure notice in the thread.
        model.fail(status=500, times=20, error_type="api_error")
        ts = await mention(bot, slack, "will this fail?")
        notice = (await wait_answers(slack, "C1", ts, timeout=20))[0]
        assert notice.text.startswith(":warning:")
        model.reset()

        # Slack fails: streaming refused with an error, then posting refused for good.
        slack.fail("chat.startStream", error="fatal_error", times=None)
        slack.fail("chat.postMessage", error="channel_not_found", times=None)
        await mention(bot, slack, "and if Slack fails?", channel="C2")
        await slack.wait_for(lambda f: bot.store.job_counts().get("failed") == 2, timeout=10)
        slack.clear_failures()

    log_text = stream.getvalue()
    messages = [json.loads(line)["message"] for line in log_text.splitlines()]
    assert "job ended" in messages and "model failed" in messages  # the bot's handler did write
    assert caplog.records and caplog.handler.level == logging.DEBUG
    assert_nowhere({"bot log stream": log_text, **caplog_surfaces(caplog)})
    assert_nowhere(slack_surfaces(slack))
    assert_nowhere(model_surfaces(model))
    assert all(r.authenticated for r in model.message_requests)  # the key did reach the API, as a header
    assert_nowhere(database_surfaces(settings.db_path))


async def test_secrets_echoed_by_upstream_errors_are_redacted(
    tmp_path: Path,
    slack: FakeSlack,
    model: FakeAnthropic,
    bot_logging: LogSetup,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hostile or buggy upstream quotes our secrets back in its error bodies."""
    echo = f"you sent {API_KEY} with {BOT_TOKEN}; signed with {SIGNING_SECRET}"
    settings = bot_settings(tmp_path, slack, model, anthropic_api_key=API_KEY)
    stream = bot_logging(settings, caplog_sees_raw_records=False)
    async with running_bot(settings) as bot:
        model.fail(status=500, times=20, error_type="api_error", message=echo)
        ts = await mention(bot, slack, "does the echo leak?")
        notice = (await wait_answers(slack, "C1", ts, timeout=20))[0]
        assert notice.text.startswith(":warning:")
        model.reset()

        # Streaming refused with a body quoting the secrets (the body is logged at DEBUG); the answer
        # still arrives by the plain post path.
        slack.fail("chat.startStream", error="fatal_error", extra={"detail": echo}, times=None)
        slack.fail("reactions.add", error="internal_error", extra={"detail": echo}, times=None)
        ts = await mention(bot, slack, "and the Slack echo?")
        answer = (await wait_answers(slack, "C1", ts))[0]
        assert not answer.text.startswith(":warning:")
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1, "failed": 1})
        slack.clear_failures()

    log_text = stream.getvalue()
    assert "[redacted]" in log_text  # the echoes reached the logs, and were redacted there
    assert_nowhere({"bot log stream": log_text, **caplog_surfaces(caplog)})
    assert_nowhere(slack_surfaces(slack))  # what the bot sent and Slack shows (not the fake's own error bodies)
    assert_nowhere(model_surfaces(model))
    assert_nowhere(database_surfaces(settings.db_path))


async def test_socket_mode_app_token_never_leaks(
    tmp_path: Path,
    slack: FakeSlack,
    model: FakeAnthropic,
    bot_logging: LogSetup,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = bot_settings(tmp_path, slack, model, socket_mode=True, anthropic_api_key=API_KEY)
    stream = bot_logging(settings, caplog_sees_raw_records=True)
    async with running_bot(settings):
        await asyncio.wait_for(slack.socket_connected.wait(), 5)
        parent = slack.add_message("C1", "<@UBOT> which broker?", user="U1")
        envelope = await slack.socket_send_event(
            event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        )
        await slack.wait_for_ack(envelope, timeout=3)
        await wait_answers(slack, "C1", parent.ts)
    assert [c.token for c in slack.calls_to("apps.connections.open")] == [APP_TOKEN]
    assert_nowhere({"bot log stream": stream.getvalue(), **caplog_surfaces(caplog)})
    assert_nowhere(slack_surfaces(slack))
    assert_nowhere(model_surfaces(model))
    assert_nowhere(database_surfaces(settings.db_path))
