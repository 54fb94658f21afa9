"""Credentials people write in Slack never reach the model, the database, Slack or the logs.

A teammate pastes a password, a connection URL, an API key or a private key into a thread that
mentions the bot, into a DM, or into `/arch-review` (text or modal). The bot runs against the fakes
(real SDK clients) while the fake model is scripted to be as careless as possible: it repeats the
planted values verbatim in its answer and in its typed record (topic, decision, gaps). Then every
surface is searched for them, as `tests/test_secrets.py` does for the bot's own tokens:

- the model: every recorded request (for `archbot ask`, its query rewrite too); the marks are there instead;
- SQLite: every row of every table and the raw bytes of the files;
- Slack: every Web API call the bot made and every message, view and ephemeral it left;
- logs: the bot's JSON handler at DEBUG, and caplog seeing each record before the bot's filter
  rewrites it (so no record is ever created with a credential in it).

The streaming path is checked on its own: for every prefix of an answer that spells out
credentials, what Slack would be shown has no piece of any of them.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.logs import RedactFilter
from bot.redaction import redact_text, settled
from bot.runtime import Bot
from bot.slack.interactions import REVIEW_CALLBACK
from bot.slack.neutralise import neutralise_markdown, stable_markdown_prefix
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic, Reply, ToolUse, default_reply, minimal_input
from tests.fakes.signing import post_event, post_interactive, post_slash_command
from tests.fakes.slack import (
    FakeSlack,
    event_callback,
    mention_event,
    message_event,
    slash_command_payload,
    view_submission_payload,
)
from tests.helpers import BackgroundLoop, message_text, wait_answers
from tests.test_secrets import (  # the same surfaces, and the bot's logging as `archbot run` sets it up
    LogSetup,
    bot_logging,  # noqa: F401 (a fixture)
    caplog_surfaces,
    database_surfaces,
    model_surfaces,
    slack_surfaces,
)

# Distinctive values, each in a form a person would paste. The tails are searched for too: a value
# cut short or partly masked still gives itself away.
DB_PASSWORD = "Zq7plantedDbPass41e9"
URL_PASSWORD = "Pl4ntedUrlPass93"
ESCAPED_PASSWORD = "Kx2planted&amp;Amp77"  # as Slack sends `Kx2planted&Amp77`: `&` escaped
API_KEY = "sk-ant-api03-PLANTEDuserkey0123456789abcdefXYZ"
KEY_BODY = "MIIEpAIBAAKCAQEAplantedPrivateKeyBody0123456789abcdefABCDEF"
PRIVATE_KEY = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n{KEY_BODY[::-1]}\n-----END RSA PRIVATE KEY-----"
VALUES = (DB_PASSWORD, URL_PASSWORD, "Kx2planted&Amp77", ESCAPED_PASSWORD, API_KEY, KEY_BODY, KEY_BODY[::-1])
FRAGMENTS = ("plantedDbPass", "ntedUrlPass", "Kx2planted", "PLANTEDuserkey", "plantedPrivateKey", "yeKetavirPdetnalp")

PASTE = (
    f"our staging config, if it helps:\nDB_PASSWORD={DB_PASSWORD}\n"
    f"DATABASE_URL=postgres://app:{URL_PASSWORD}@db.internal:5432/orders\n"
    f"REDIS_PASSWORD={ESCAPED_PASSWORD}\nANTHROPIC key {API_KEY}\n{PRIVATE_KEY}"
)
# What the careless model says back: the values, with and without their names.
ECHO = (
    f"Your settings: DB_PASSWORD={DB_PASSWORD} and postgres://app:{URL_PASSWORD}@db.internal:5432/orders.\n\n"
    f"The key `{API_KEY}` should live in a vault, and so should this one:\n\n{PRIVATE_KEY}\n\n"
    "Rotate them; a password policy and a token bucket on the login endpoint help too."
)


def leaks(text: str) -> list[str]:
    return [v for v in (*VALUES, *FRAGMENTS) if v in text]


def assert_nowhere(surfaces: dict[str, str]) -> None:
    found = {where: leaks(text) for where, text in surfaces.items() if leaks(text)}
    assert not found, f"planted credentials found: {found}"


def careless(body: dict[str, Any]) -> Reply:
    """The fake model repeating the credentials: in the answer, and in every field of its record."""
    choice = body.get("tool_choice") or {}
    if choice.get("type") not in ("tool", "any"):
        if not body.get("stream"):
            return default_reply(body)  # the query rewrite
        return Reply(text=ECHO)
    tool = next(t for t in body["tools"] if t["name"] == choice.get("name", body["tools"][0]["name"]))
    record = minimal_input(tool["input_schema"])
    record.update(
        kind="answer",
        topic=f"DB_PASSWORD={DB_PASSWORD}",
        decision=f"use postgres://app:{URL_PASSWORD}@db.internal/orders",
        gaps=[f"where {API_KEY} is rotated"],
        assumptions=[f"REDIS_PASSWORD={ESCAPED_PASSWORD}"],
        confidence_reason=f"DB_PASSWORD={DB_PASSWORD}",
    )
    return Reply(tool_use=ToolUse(name=tool["name"], input=record))


def url(bot: Bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


def assert_clean(slack: FakeSlack, model: FakeAnthropic, db_path: Path, logs: io.StringIO, caplog: Any) -> None:
    requests = model_surfaces(model)
    assert requests and any("[redacted: password]" in text for text in requests.values())
    assert_nowhere(requests)
    assert_nowhere(database_surfaces(db_path))
    assert_nowhere(slack_surfaces(slack))
    log_text = logs.getvalue()
    assert "job ended" in log_text  # the bot's handler did write
    assert_nowhere({"bot log stream": log_text, **caplog_surfaces(caplog)})


class CarelessBot:
    """`async with careless_bot(**settings) as bot`: the bot against the fakes, the model scripted
    to repeat the credentials (`careless`), logging as `archbot run` sets it up (JSON, DEBUG; caplog
    sees each record before the bot's filter). Once the bot has stopped, every surface is searched
    (`assert_clean`): a test that leaves the block normally has always been checked."""

    def __init__(
        self, tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, setup_logs: LogSetup, caplog: Any
    ) -> None:
        self.tmp_path, self.slack, self.model, self.setup_logs, self.caplog = tmp_path, slack, model, setup_logs, caplog

    @asynccontextmanager
    async def __call__(self, **overrides: Any) -> AsyncIterator[Bot]:
        self.model.default_reply = careless
        settings = bot_settings(self.tmp_path, self.slack, self.model, log_format="json", **overrides)
        logs = self.setup_logs(settings, caplog_sees_raw_records=True)
        async with running_bot(settings) as bot:
            yield bot
        assert_clean(self.slack, self.model, settings.db_path, logs, self.caplog)


@pytest.fixture
def careless_bot(
    tmp_path: Path,
    slack: FakeSlack,
    model: FakeAnthropic,
    bot_logging: LogSetup,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> CarelessBot:
    return CarelessBot(tmp_path, slack, model, bot_logging, caplog)


# -- a mention in a thread where the credentials were pasted earlier --------------------------------
@pytest.mark.parametrize("stream_mode", ["auto", "update"])
async def test_a_thread_with_pasted_credentials_is_answered_without_them(
    stream_mode: str, careless_bot: CarelessBot, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with careless_bot(stream_mode=stream_mode) as bot:
        parent = slack.add_message("C1", PASTE, user="U2")
        question = slack.add_message("C1", "<@UBOT> is this setup safe for production?", user="U1", thread_ts=parent.ts)
        event = mention_event(question.text, channel="C1", user="U1", ts=question.ts, thread_ts=parent.ts)
        assert (await post_event(url(bot), slack.signing_secret, event_callback(event)))[0] == 200
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})

        shown = message_text(answer)
        assert "DB_PASSWORD=[redacted: password]" in shown  # the echo, redacted where Slack shows it
        assert "postgres://app:[redacted: password]@db.internal:5432/orders" in shown
        assert "[redacted: anthropic key]" in shown and "[redacted: private key]" in shown
        assert "password policy and a token bucket" in shown  # ordinary words survive

        # The model read the thread with the marks in place of the values, and with their names.
        sent = json.dumps([r.body for r in model.message_requests if r.body.get("stream")])
        for kept in ("DB_PASSWORD=[redacted: password]", "postgres://app:[redacted: password]@db.internal"):
            assert kept in sent


# -- a DM whose question itself carries them ------------------------------------------------------
async def test_a_dm_question_with_a_credential_is_answered_without_it(
    careless_bot: CarelessBot, slack: FakeSlack
) -> None:
    slack.add_channel("D1", is_im=True, user="U1")
    async with careless_bot() as bot:
        msg = slack.add_message("D1", f"why does login fail with DB_PASSWORD={DB_PASSWORD}?\n{PASTE}", user="U1")
        event = message_event(msg.text, channel="D1", user="U1", ts=msg.ts, channel_type="im")
        assert (await post_event(url(bot), slack.signing_secret, event_callback(event)))[0] == 200
        await wait_answers(slack, "D1", msg.ts)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        stored = bot.store.query("SELECT text FROM jobs")[0]["text"]
        assert stored.startswith("why does login fail with DB_PASSWORD=[redacted: password]\n")


# -- /arch-review, as text and as the modal ---------------------------------------------------------
async def test_a_review_of_a_proposal_with_credentials_never_shows_them(
    careless_bot: CarelessBot, slack: FakeSlack
) -> None:
    async with careless_bot() as bot:
        text = f"Move sessions to Postgres with DB_PASSWORD={DB_PASSWORD}. {PASTE}"
        fields = slash_command_payload("/arch-review", text, user="U1", channel="C1")
        assert (await post_slash_command(url(bot), slack.signing_secret, fields))[0] == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})

        def field(value: str) -> dict[str, Any]:
            return {"value": {"type": "plain_text_input", "value": value}}

        values = {
            "title": field(f"Sessions, DB_PASSWORD={DB_PASSWORD}"),
            "proposal": field("Move sessions from Redis to Postgres."),
            "context": field(PASTE.replace("&amp;", "&")),  # a modal's text is not escaped
            "concerns": field(f"is {API_KEY} safe in the env?"),
        }
        meta = json.dumps({"channel": "C1", "lang": "en"})
        payload = view_submission_payload(callback_id=REVIEW_CALLBACK, values=values, user="U1", private_metadata=meta)
        assert (await post_interactive(url(bot), slack.signing_secret, payload))[0] == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 2})

        parents = [m for m in slack.bot_messages("C1") if not m.is_reply]
        assert len(parents) == 2
        assert any("DB_PASSWORD=[redacted: password]" in m.text for m in parents)  # the title, shown redacted
        reviews = [m for m in slack.bot_messages("C1") if m.is_reply and "[redacted: password]" in message_text(m)]
        assert len(reviews) == 2


# -- `archbot ask` with a key ---------------------------------------------------------------------
def test_ask_sends_and_prints_no_credential_from_the_question(tmp_path: Path) -> None:
    loop = BackgroundLoop()
    model = loop.run(_started(FakeAnthropic()))
    model.default_reply = careless
    try:
        env = {
            "ARCHBOT_DB": str(tmp_path / "a.db"),
            "ANTHROPIC_API_KEY": "sk-ant-fake-0123456789abcdef",
            "ANTHROPIC_BASE_URL": model.base_url,
            "ARCHBOT_QUERY_REWRITE": "true",
        }
        question = f"How should we rotate DB_PASSWORD={DB_PASSWORD} and {API_KEY}?"
        result = CliRunner().invoke(cli, ["ask", question], env=env)
        assert result.exit_code == 0, result.output
        assert "DB_PASSWORD=[redacted: password]" in result.output and not leaks(result.output)
        bodies = [r.body for r in model.message_requests]
        assert any(not b.get("stream") and not b.get("tools") for b in bodies)  # the query rewrite
        assert_nowhere(model_surfaces(model))
        assert "DB_PASSWORD=[redacted: password]" in json.dumps(bodies)
    finally:
        loop.run(model.stop())
        loop.close()


async def _started(fake: FakeAnthropic) -> FakeAnthropic:
    await fake.start()
    return fake


# -- streaming: a credential split across chunks ----------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        ECHO,
        PASTE,
        f"Set it with\n\n```\nexport DB_PASSWORD='{DB_PASSWORD} x'\n```\n",
        f"配置里写着DB_PASSWORD={DB_PASSWORD}，请尽快轮换。\n\n连接串postgres://app:{URL_PASSWORD}@db/x，密码：{DB_PASSWORD}。",
    ],
)
def test_no_prefix_of_a_streaming_answer_shows_part_of_a_credential(text: str) -> None:
    final = neutralise_markdown(text)
    assert not leaks(final)
    shown = ""
    rewrites = 0
    for end in range(1, len(text) + 1):
        # What ReplyPoster streams for the text so far (bot/slack/post.py, `_show_progress`).
        safe = neutralise_markdown(stable_markdown_prefix(settled(text[:end])))
        assert not leaks(safe), (end, safe)
        if safe.strip() and safe != shown:
            rewrites += not safe.startswith(shown)  # Slack's stream only appends: a change falls back to edits
            shown = safe
    assert rewrites == 0
    assert final.startswith(shown)


# -- what must survive -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Should the password policy require 12 characters? And is a token bucket enough for the login API?",
        "We set DB_PASSWORD, JWT_SECRET and ANTHROPIC_API_KEY in the environment, never in the repo.",
        "password: string, token_ttl: 3600, max_tokens: 4096, the key point is idempotency",
        "use DB_PASSWORD=${DB_PASSWORD} or API_KEY=<your-key> in the template",
        "postgres://user:password@host:5432/db is the URL template; the secret lives in Vault",
        "&lt;@U123&gt; said the session key rotates every 15m",
    ],
)
def test_ordinary_architecture_talk_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "mark"),
    [
        (f"DB_PASSWORD={DB_PASSWORD}", "DB_PASSWORD=[redacted: password]"),
        (f"postgres://app:{URL_PASSWORD}@db:5432/x", "postgres://app:[redacted: password]@db:5432/x"),
        ("redis://:Pl4ntedRedis@cache:6379", "redis://:[redacted: password]@cache:6379"),
        (f"REDIS_PASSWORD={ESCAPED_PASSWORD} ok", "REDIS_PASSWORD=[redacted: password] ok"),
        (f"try {API_KEY} now", "try [redacted: anthropic key] now"),
        ("my password: Tr0ub4dor3x please don't share", "my password: [redacted: password] please"),
        (f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n", "-----BEGIN RSA PRIVATE KEY-----\n[redacted: private key]"),
    ],
)
def test_what_people_paste_is_redacted_with_its_context(text: str, mark: str) -> None:
    redacted = redact_text(text)
    assert mark in redacted and not leaks(redacted)
    assert not re.search(r"Pl4ntedRedis|Tr0ub4dor3x", redacted)


def test_a_log_record_quoting_a_credential_is_redacted() -> None:
    """An error that quotes what a person wrote (a library's message, a traceback) is logged redacted."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter())
    log = logging.getLogger("tests.user_credentials")
    log.addHandler(handler)
    try:
        try:
            raise ValueError(f"bad config line: DB_PASSWORD={DB_PASSWORD}")
        except ValueError:
            log.error("could not parse %s", f"postgres://app:{URL_PASSWORD}@db/x", exc_info=True, extra={"q": API_KEY})
    finally:
        log.removeHandler(handler)
    written = stream.getvalue()
    assert "postgres://app:[redacted: password]@db/x" in written and "DB_PASSWORD=[redacted: password]" in written
    assert not leaks(written)
