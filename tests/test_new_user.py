"""What a new user hit (#14): each case through the real clients against the fakes, or the real CLI.

Slack cases start the bot (`running_bot`) and deliver signed events; the CLI cases run click's
CliRunner on a temp database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import cli
from bot.jobs import HELP_TEXT
from bot.proposals import short_title
from bot.slack.post import WORKING_REACTION, WorkingReactions
from bot.store import Store
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event, post_slash_command
from tests.fakes.slack import FakeSlack, event_callback, mention_event, message_event, slash_command_payload


def url(bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


async def deliver_mention(bot, slack: FakeSlack, text: str, *, channel: str = "C1", user: str = "U1"):
    message = slack.add_message(channel, text, user=user)
    payload = event_callback(mention_event(message.text, channel=channel, user=user, ts=message.ts))
    status, _ = await post_event(url(bot), slack.signing_secret, payload)
    assert status == 200
    return message


# -- item 2: a bare mention ------------------------------------------------------------------
async def test_bare_mention_gets_help_and_loses_the_working_reaction(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        question = await deliver_mention(bot, slack, "<@UBOT>")
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        await slack.wait_for(lambda f: f.calls_to("reactions.remove"))
    [help_reply] = [m for m in slack.thread("C1", question.ts) if m.bot_id == slack.bot_id]
    assert help_reply.text == HELP_TEXT
    assert [c.args["name"] for c in slack.calls_to("reactions.add")] == [WORKING_REACTION]
    assert WORKING_REACTION not in slack.message("C1", question.ts).reactions
    assert not model.message_requests


async def test_a_job_done_before_its_deferred_reaction_is_added_leaves_no_working_reaction(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        assert bot.intake is not None
        after = bot.intake.after
        after.longest = 3600.0  # the burst held open below does not end on its own
        with after.acking():  # another request is being acked: the 👀 waits for the burst's acks
            question = await deliver_mention(bot, slack, "<@UBOT>")
            bot.deps.wake.set()  # a worker claims the job now (as its idle poll may), before the 👀
            await slack.wait_for(lambda f: [m for m in f.thread("C1", question.ts) if m.bot_id == f.bot_id])
            assert not slack.calls_to("reactions.add", include_failed=True)
            assert bot.store.job_counts() == {"running": 1}  # its removal waits for the add
        # The burst's acks are written: the 👀 is added, then the job removes it and ends.
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        await slack.wait_for(lambda f: bot.deps.reactions.pending == 0)
    assert [m.text for m in slack.thread("C1", question.ts) if m.bot_id == slack.bot_id] == [HELP_TEXT]
    calls = [c.method for c in slack.calls if c.method.startswith("reactions.")]
    assert calls == ["reactions.add", "reactions.remove"]
    assert WORKING_REACTION not in slack.message("C1", question.ts).reactions


async def test_the_working_reaction_is_removed_after_its_add_in_flight_is_answered(slack: FakeSlack) -> None:
    message = slack.add_message("C1", "<@UBOT> what is the gateway?", user="U1")
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    reactions = WorkingReactions()
    promised = reactions.expect("C1", message.ts)
    twin = reactions.expect("C1", message.ts)  # the message twin of the same mention: a duplicate
    reactions.drop(twin)
    answer = slack.hold("reactions.add")
    adding = asyncio.create_task(reactions.add(client, promised))
    await slack.wait_for(lambda f: f.held_calls.get("reactions.add") == 1)
    removing = asyncio.create_task(reactions.remove(client, channel="C1", ts=message.ts))
    answer.set()
    await asyncio.gather(adding, removing)
    calls = [c.method for c in slack.calls if c.method.startswith("reactions.")]
    assert calls == ["reactions.add", "reactions.remove"]
    assert WORKING_REACTION not in slack.message("C1", message.ts).reactions
    assert reactions.pending == 0


# -- item 11 -----------------------------------------------------------------------------------
async def test_stats_shows_the_channel_type_resolved_by_the_job(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    slack.add_channel("C1", name="design")
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        await deliver_mention(bot, slack, "<@UBOT> what is a saga?")  # app_mention: no channel_type
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    result = CliRunner().invoke(cli, ["stats", "--json"], env={"ARCHBOT_DB": str(tmp_path / "archbot.db")})
    assert result.exit_code == 0, result.output
    import json

    channels = json.loads(result.stdout)["busiest_channels"]
    assert channels == [{"channel": "C1", "channel_type": "channel", "questions": 1}]
    store = Store(tmp_path / "archbot.db")
    assert store.query("SELECT channel_type FROM threads") == [{"channel_type": "channel"}]
    store.close()


async def test_a_job_that_could_not_post_does_not_adopt_the_thread(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack.add_channel("C9", name="design", is_member=False)
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        question = await deliver_mention(bot, slack, "<@UBOT> what is a saga?", channel="C9")
        await slack.wait_for(lambda f: bot.store.job_counts() == {"failed": 1})
        assert not bot.store.is_bot_thread("C9", question.ts)
        # A later reply in that thread, without a mention, is not taken for a follow-up.
        reply = slack.add_message("C9", "and the outbox?", user="U2", thread_ts=question.ts)
        payload = event_callback(message_event(reply.text, channel="C9", user="U2", ts=reply.ts, thread_ts=question.ts))
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        await asyncio.sleep(0)  # the listener runs before the ack: nothing is pending once we have it
        assert bot.store.job_counts() == {"failed": 1}
    refused = [r for r in caplog.records if "not_in_channel" in str(getattr(r, "error", ""))]
    assert refused, "the refusal is logged with Slack's error"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info], "no traceback"


async def test_a_post_answered_without_ts_is_refused_not_stored_as_none(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    slack.respond("chat.postMessage", {"ok": True}, times=None)  # a proxy that drops the body
    async with running_bot(bot_settings(tmp_path, slack, model, stream_mode="update")) as bot:
        await deliver_mention(bot, slack, "<@UBOT> what is a saga?")
        await slack.wait_for(lambda f: bot.store.job_counts() == {"failed": 1})
        assert bot.store.query("SELECT error, reply_ts FROM jobs") == [{"error": "slack: no_ts", "reply_ts": None}]
        assert bot.store.query("SELECT message_ts FROM answers WHERE message_ts = 'None'") == []


async def test_start_does_not_warn_that_the_token_is_unused(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)  # as in a real deployment
    caplog.set_level(logging.INFO)
    async with running_bot(bot_settings(tmp_path, slack)):
        pass
    assert not [r for r in caplog.records if "will be unused" in r.getMessage()]


async def test_review_jobs_log_job_queued_and_keep_whole_words_in_the_title(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    slack.add_channel("C1", name="design")
    proposal = (
        "Move device connection events from direct HTTP callbacks to a transactional outbox with a relay service\n"
        "so notifications survive restarts."
    )
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        fields = slash_command_payload("/arch-review", proposal, user="U1", channel="C1")
        status, _ = await post_slash_command(url(bot), slack.signing_secret, fields)
        assert status == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    queued = [r for r in caplog.records if r.getMessage() == "job queued"]
    assert [getattr(r, "kind", None) for r in queued] == ["review"]
    [parent] = [m for m in slack.bot_messages("C1") if m.thread_ts is None or m.thread_ts == m.ts]
    title = short_title(proposal)
    assert title == "Move device connection events from direct HTTP callbacks to a transactional…"
    assert f"*{title}*" in parent.text


def test_short_title_cuts_at_a_word() -> None:
    assert short_title("Short title\nbody") == "Short title"
    cut = short_title("word " * 30, limit=40)
    assert cut.endswith("word…") and len(cut) <= 40


def test_search_with_an_empty_query_exits_2_like_ask(tmp_path: Path) -> None:
    env = {"ARCHBOT_DB": str(tmp_path / "a.db")}
    for command in (["search", ""], ["search", "   "], ["ask", ""]):
        result = CliRunner().invoke(cli, command, env=env)
        assert result.exit_code == 2, (command, result.output)
        assert "empty" in result.stderr


def test_stats_since_in_the_future_exits_2(tmp_path: Path) -> None:
    Store(tmp_path / "a.db").close()
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 2 * 86400))
    result = CliRunner().invoke(cli, ["stats", "--since", tomorrow], env={"ARCHBOT_DB": str(tmp_path / "a.db")})
    assert result.exit_code == 2
    assert "--since must be in the past" in result.stderr


# -- item 8: /metrics from the first scrape ------------------------------------------------------
async def test_metrics_export_the_label_values_that_always_exist_at_zero(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    import aiohttp

    async with (
        running_bot(bot_settings(tmp_path, slack, model)) as bot,
        aiohttp.ClientSession() as session,
        session.get(url(bot) + "/metrics") as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    for sample in (
        'archbot_jobs_total{outcome="answered"} 0.0',
        'archbot_jobs_total{outcome="failed"} 0.0',
        'archbot_tokens_total{kind="input"} 0.0',
        'archbot_feedback_total{value="down"} 0.0',
        'archbot_requests_rejected_total{reason="unsigned"} 0.0',
        'archbot_slack_api_errors_total{method="chat.postMessage"} 0.0',
        'archbot_events_received_total{type="app_mention"} 0.0',
        'archbot_events_ignored_total{reason="duplicate"} 0.0',
    ):
        assert sample in text, sample


# -- item 9: Slack Connect ---------------------------------------------------------------------
async def test_stream_recipient_team_is_the_authors_team_in_slack_connect(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    slack.add_channel("C1", name="shared-design", is_ext_shared=True)
    async with running_bot(bot_settings(tmp_path, slack, model, stream_mode="stream")) as bot:
        message = slack.add_message("C1", "<@UBOT> what is a saga?", user="UEXT")
        payload = event_callback(
            mention_event(message.text, channel="C1", user="UEXT", ts=message.ts, team="T1", user_team="TPARTNER")
        )
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    [start] = slack.calls_to("chat.startStream")
    assert start.args["recipient_user_id"] == "UEXT" and start.args["recipient_team_id"] == "TPARTNER"


# -- item 7: the first `ask`, and what a CLI answer imports -------------------------------------
def test_first_ask_on_a_new_database_says_it_is_indexing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"ARCHBOT_DB": str(tmp_path / "new.db"), "ANTHROPIC_API_KEY": ""}
    first = CliRunner().invoke(cli, ["ask", "How do we keep a slow downstream service from taking ours down?"], env=env)
    assert first.exit_code == 0, first.output
    assert "first run" in first.stderr and "indexing knowledge/" in first.stderr
    assert "indexed " in first.stderr and " files" in first.stderr  # the summary once done
    assert "circuit" in first.stdout.lower() or "bulkhead" in first.stdout.lower()
    again = CliRunner().invoke(cli, ["ask", "What is a saga?"], env=env)
    assert again.exit_code == 0 and "first run" not in again.stderr


_IMPORTS = """
import sys
from bot.cli import main
sys.argv = ["archbot", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("anthropic", "rjieba", "yaml", "markdown_it", "croniter") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize(
    ("command", "absent"),
    [
        (
            ["ask", "How do we keep a slow downstream service from taking ours down?"],
            ("anthropic", "rjieba", "croniter"),
        ),
        (["search", "circuit breaker"], ("anthropic", "rjieba", "yaml", "markdown_it", "croniter")),
    ],
)
def test_cli_answers_import_only_what_they_use(tmp_path: Path, command: list[str], absent: tuple[str, ...]) -> None:
    import os
    import subprocess
    import sys

    from bot.config import Settings
    from bot.retrieval import index_sources

    index_sources(Settings(db_path=tmp_path / "a.db"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ARCHBOT_"))}
    env["ARCHBOT_DB"] = str(tmp_path / "a.db")
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS, *command], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    heavy = proc.stdout.strip().splitlines()[-1].removeprefix("HEAVY=").split(",")
    assert not set(heavy) & set(absent), heavy


def test_glossary_terms_file_is_current() -> None:
    from bot.retrieval.text import _glossary_terms, glossary_phrases, phrase_terms

    known = _glossary_terms()
    stale = [p for p in glossary_phrases() if known.get(p) != phrase_terms(p)]
    assert not stale, f"bot/data/glossary_terms.tsv is stale ({stale[:3]}…): run python -m bot.retrieval.text"
