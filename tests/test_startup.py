"""Start-up when Slack does not answer, and signals during start-up and shutdown.

While `auth.test` fails (refused, hung, 5xx) the bot keeps trying with backoff for
ARCHBOT_SLACK_START_SECONDS, logging each failure at once; its port answers meanwhile: /healthz
200, /readyz 503 naming `slack`, HTTP events 503 (Slack redelivers them). When Slack answers, it
starts. When the time is up, `archbot run` exits 1 saying what it could not reach. SIGTERM during
start-up exits 0 at once; a second SIGTERM while draining exits 1 at once, and the job it left is
answered once by the next start. Bounds here are generous waits, not speed checks.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.runtime import Bot
from tests.conftest import bot_settings
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import answers_in, wait_answers
from tests.test_process import bot_env, bound_port, start_bot

BOUND = 60.0  # a hung process or start fails the test; nothing here is timed


async def get(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def until_answers(url: str, proc: asyncio.subprocess.Process | None = None) -> int:
    """Wait until `url` answers (any status) and return the status; fails if the process exits first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            assert proc is None or proc.returncode is None, "the bot exited"
            try:
                async with session.get(url) as resp:
                    return resp.status
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)  # polling a port that is not bound yet
    raise AssertionError(f"{url} never answered")


async def test_while_slack_does_not_answer_the_port_says_not_ready_and_events_are_refused(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    gate = slack.hold("auth.test")  # Slack takes the connection but does not answer
    bot = Bot(bot_settings(tmp_path, slack, model))
    starting = asyncio.create_task(bot.start(index=False))
    try:
        await slack.wait_for(lambda f: f.held_calls.get("auth.test") and bot.port)
        base = f"http://127.0.0.1:{bot.port}"
        assert await get(base + "/healthz") == (200, {"status": "ok"})
        status, ready = await get(base + "/readyz")
        assert status == 503 and ready["checks"]["slack"] is False and ready["checks"]["workers"] is False
        parent = slack.add_message("C1", "<@UBOT> asked while the bot starts", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        assert (await post_event(base, slack.signing_secret, payload))[0] == 503  # Slack redelivers it
        assert bot.store.query("SELECT COUNT(*) AS n FROM jobs") == [{"n": 0}]
        gate.set()  # Slack answers
        await asyncio.wait_for(starting, BOUND)
        assert (await get(base + "/readyz"))[0] == 200
        assert (await post_event(base, slack.signing_secret, payload, retry_num=1))[0] == 200
        assert len(await wait_answers(slack, "C1", parent.ts)) == 1
    finally:
        gate.set()
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await bot.stop()


async def test_a_failing_auth_test_is_logged_at_once_and_tried_again(
    tmp_path: Path, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail("auth.test", status=503, times=2)
    bot = Bot(bot_settings(tmp_path, slack))
    with caplog.at_level(logging.INFO, logger="bot.runtime"):
        try:
            await asyncio.wait_for(bot.start(index=False), BOUND)
            assert bot.slack_ok
        finally:
            await bot.stop()
    warnings = [r for r in caplog.records if r.getMessage().startswith("cannot reach Slack")]
    assert [(r.levelname, r.attempt, r.url) for r in warnings] == [  # type: ignore[attr-defined]
        ("WARNING", 1, slack.api_url),
        ("WARNING", 2, slack.api_url),
    ]
    assert "503" in warnings[0].error  # type: ignore[attr-defined]
    assert any(r.getMessage() == "Slack answers auth.test now" for r in caplog.records)
    assert len(slack.calls_to("auth.test", include_failed=True)) == 3


async def test_run_gives_up_on_an_unreachable_slack_with_exit_1_and_says_where(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused, and no one else can bind it
        dead = f"http://127.0.0.1:{held.getsockname()[1]}/api/"
        env = bot_env(tmp_path, slack, model) | {"SLACK_API_URL": dead, "ARCHBOT_SLACK_START_SECONDS": "2"}
        log = tmp_path / "bot.log"
        proc = await asyncio.create_subprocess_exec(
            *start_command(), env=env, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path)
        )
        code = await asyncio.wait_for(proc.wait(), BOUND)
    out = log.read_text()
    assert code == 1, out
    assert f"archbot: cannot reach Slack at {dead}" in out
    assert out.count("cannot reach Slack; /readyz reports slack: false") >= 1  # said at the first failure
    assert "Traceback" not in out and "xoxb-" not in out


async def test_sigterm_during_start_up_exits_0(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic) -> None:
    gate = slack.hold("auth.test")
    env = bot_env(tmp_path, slack, model)
    log = tmp_path / "bot.log"
    proc = await asyncio.create_subprocess_exec(
        *start_command(), env=env, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path)
    )
    try:
        port = await bound_port(proc, log)
        assert await until_answers(f"http://127.0.0.1:{port}/readyz", proc) == 503  # waiting for Slack
        await slack.wait_for(lambda f: f.held_calls.get("auth.test"))
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), BOUND)
    finally:
        gate.set()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = log.read_text()
    assert code == 0, out
    assert "stopping during start-up" in out and "Traceback" not in out


async def test_a_second_sigterm_exits_at_once_and_the_job_is_answered_once_by_the_next_start(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    env = bot_env(tmp_path, slack, model) | {"ARCHBOT_SHUTDOWN_GRACE": "600"}  # the drain would wait long
    log = tmp_path / "bot.log"
    model.pause()
    proc, port = await start_bot(env, log)
    parent = slack.add_message("C1", "<@UBOT> still answered after a forced exit?", user="U1")
    payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
    assert (await post_event(f"http://127.0.0.1:{port}", slack.signing_secret, payload))[0] == 200
    await model.wait_for_count(1)  # the job is in flight
    proc.send_signal(signal.SIGTERM)
    await wait_not_ready(f"http://127.0.0.1:{port}/readyz")  # draining
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proc.wait(), BOUND)
    assert code == 1
    assert "second SIGTERM: exiting now" in log.read_text()
    assert not answers_in(slack, "C1", parent.ts)
    model.resume()
    proc, port = await start_bot(env | {"ARCHBOT_SHUTDOWN_GRACE": "6"}, log)
    try:
        assert len(await wait_answers(slack, "C1", parent.ts, timeout=20)) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), BOUND) == 0
    assert len(answers_in(slack, "C1", parent.ts)) == 1


async def wait_not_ready(url: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            async with session.get(url) as resp:
                if resp.status == 503:
                    return
            await asyncio.sleep(0.05)  # polling a condition
    raise AssertionError("the bot never started draining")


def start_command() -> list[str]:
    return [sys.executable, "-m", "bot", "run"]
