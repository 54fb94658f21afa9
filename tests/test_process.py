"""`archbot run` as a real process: crash recovery (SIGKILL), graceful drain (SIGTERM), config errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from bot.cli import cli
from tests.conftest import REPO_ROOT
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import answers_in, wait_answers


def free_port() -> int:
    """A port free now (the benches'): not bound for you, so another socket may take it before you do."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, port: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_", "ARCHBOT_"))}
    env.update(
        {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
            "SLACK_API_URL": slack.api_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-0123456789abcdef",
            "ANTHROPIC_BASE_URL": model.base_url,
            "ARCHBOT_DB": str(tmp_path / "archbot.db"),
            # 0 (the tests): the bot binds a port the OS picks and logs it (`bound_port`). A port found
            # free here and bound by the bot a second later may be taken meanwhile by another socket.
            "ARCHBOT_PORT": str(port),
            "ARCHBOT_REINDEX_MINUTES": "0",
            "ARCHBOT_SHUTDOWN_GRACE": "6",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    return env


async def bound_port(proc: asyncio.subprocess.Process, log: Path, offset: int = 0) -> int:
    """The port `archbot run` bound, from its `serving http` log line (written after `offset`)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"bot exited early: {log.read_text()[-2000:]}")
        for line in log.read_bytes()[offset:].decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("message") == "serving http":
                    return int(record["port"])
        await asyncio.sleep(0.05)  # polling the log for a line not written yet
    proc.kill()
    raise AssertionError(f"bot never bound its port: {log.read_text()[-2000:]}")


async def start_bot(env: dict[str, str], log: Path) -> tuple[asyncio.subprocess.Process, int]:
    """`archbot run`, once ready; its port."""
    offset = log.stat().st_size if log.exists() else 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=log.open("ab"),
        stderr=asyncio.subprocess.STDOUT,
        cwd=str(log.parent),
    )
    port = await bound_port(proc, log, offset)
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:  # a readiness probe, as an orchestrator would do
            if proc.returncode is not None:
                raise AssertionError(f"bot exited early: {log.read_text()[-2000:]}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return proc, port
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError(f"bot never became ready: {log.read_text()[-2000:]}")


async def test_sigkill_after_ack_resumes_and_answers_once(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    env = bot_env(tmp_path, slack, model)
    log = tmp_path / "bot.log"
    model.pause()
    proc, port = await start_bot(env, log)
    parent = slack.add_message("C1", "<@UBOT> survive a crash?", user="U1")
    payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
    status, _ = await post_event(f"http://127.0.0.1:{port}", slack.signing_secret, payload)
    assert status == 200
    await model.wait_for_count(1, timeout=10)  # the job is in flight: acked, not answered
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert not answers_in(slack, "C1", parent.ts)
    model.resume()
    proc, port = await start_bot(env, log)
    try:
        answers = await wait_answers(slack, "C1", parent.ts, timeout=20)
        assert len(answers) == 1 and "survive a crash?" in (answers[0].blocks or [{}])[0].get("text", answers[0].text)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert len(answers_in(slack, "C1", parent.ts)) == 1


async def test_sigkill_the_moment_the_ack_arrives_loses_nothing(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    """Killed as soon as Slack has its 200, before the job could start: the event was committed
    before the ack, so the restarted process answers it, once."""
    env = bot_env(tmp_path, slack, model)
    log = tmp_path / "bot.log"
    proc, port = await start_bot(env, log)
    parent = slack.add_message("C1", "<@UBOT> acked, then the process died?", user="U1")
    payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
    status, _ = await post_event(f"http://127.0.0.1:{port}", slack.signing_secret, payload)
    proc.send_signal(signal.SIGKILL)
    assert status == 200
    await proc.wait()
    proc, port = await start_bot(env, log)
    try:
        answers = await wait_answers(slack, "C1", parent.ts, timeout=20)
        assert len(answers) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert len(answers_in(slack, "C1", parent.ts)) == 1


async def test_sigterm_drains_in_flight_job_and_exits_zero(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    env = bot_env(tmp_path, slack, model)
    log = tmp_path / "bot.log"
    model.pause()
    proc, port = await start_bot(env, log)
    parent = slack.add_message("C1", "<@UBOT> finish before exit?", user="U1")
    payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
    assert (await post_event(f"http://127.0.0.1:{port}", slack.signing_secret, payload))[0] == 200
    await model.wait_for_count(1, timeout=10)
    proc.send_signal(signal.SIGTERM)
    model.resume()
    code = await asyncio.wait_for(proc.wait(), 30)  # a bound for a hung process, not a speed check
    assert code == 0
    assert len(answers_in(slack, "C1", parent.ts)) == 1
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
        ({"SLACK_BOT_TOKEN": "not-a-token", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ARCHBOT_PORT": "eighty"}, "ARCHBOT_PORT"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ARCHBOT_TZ": "Mars/Olympus"}, "ARCHBOT_TZ"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ARCHBOT_CONCURRENCY": "0"}, "ARCHBOT_CONCURRENCY"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-wrong"}, "SLACK_APP_TOKEN"),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ARCHBOT_DIGEST_CRON": "every monday"},
            "ARCHBOT_DIGEST_CRON",
        ),
    ],
)
def test_config_errors_exit_2_naming_the_variable(env: dict[str, str], variable: str) -> None:
    result = CliRunner().invoke(cli, ["run"], env=env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and variable in lines[0]
    assert "Traceback" not in result.output
    assert "xoxb-1" not in result.output


def test_config_error_from_a_real_process(tmp_path: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_", "ARCHBOT_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2
    assert "SLACK_BOT_TOKEN" in done.stderr and "Traceback" not in done.stderr
