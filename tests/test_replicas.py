"""Two `archbot run` processes on one PostgreSQL database, against the fake Slack and model.

Each replica has its own port and its own local index file (ARCHBOT_DB); jobs, threads and
answers are shared through ARCHBOT_DATABASE_URL. Mentions delivered to either replica are each
answered exactly once; a replica SIGKILLed mid-answer has its job resumed by the other once its
heartbeat stops.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import psycopg

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import FAILURE_MARK, all_answers, answers_in, wait_answers
from tests.test_process import bot_env, start_bot


async def start_replicas(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, pg_url: str, n: int = 2
) -> list[tuple[asyncio.subprocess.Process, int]]:
    async def one(i: int) -> tuple[asyncio.subprocess.Process, int]:
        home = tmp_path / f"replica{i}"
        home.mkdir()
        env = bot_env(home, slack, model)
        env["ARCHBOT_DATABASE_URL"] = pg_url
        env["ARCHBOT_HEARTBEAT_SECONDS"] = "1"
        return await start_bot(env, home / "bot.log")

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def stop_all(replicas: list[tuple[asyncio.subprocess.Process, int]]) -> None:
    for proc, _ in replicas:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _ in replicas:
        await asyncio.wait_for(proc.wait(), 15)


def job_states(pg_url: str) -> dict[str, int]:
    with psycopg.connect(pg_url) as conn:
        return dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())


async def test_forty_mentions_across_two_replicas_are_answered_once(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, pg_url: str
) -> None:
    replicas = await start_replicas(tmp_path, slack, model, pg_url)
    try:
        parents = [slack.add_message("C1", f"<@UBOT> replicated question {i}?", user="U1") for i in range(40)]

        async def deliver(i: int, parent) -> int:
            payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
            port = replicas[i % 2][1]
            status, _ = await post_event(f"http://127.0.0.1:{port}", slack.signing_secret, payload)
            # Slack's redelivery of the same event to the other replica: deduped across replicas.
            if i % 5 == 0:
                other = replicas[(i + 1) % 2][1]
                await post_event(f"http://127.0.0.1:{other}", slack.signing_secret, payload, retry_num=1)
            return status

        statuses = await asyncio.gather(*(deliver(i, p) for i, p in enumerate(parents)))
        assert statuses == [200] * 40
        answers = await slack.wait_for(lambda f: a if len(a := all_answers(f)) >= 40 else None, timeout=60)
        assert sorted(a.thread_ts for a in answers) == sorted(p.ts for p in parents)
        assert not [a for a in answers if a.text.startswith(FAILURE_MARK)]
        await slack.wait_for(lambda f: job_states(pg_url) == {"done": 40}, timeout=10)
    finally:
        await stop_all(replicas)
    assert len(all_answers(slack)) == 40


async def test_a_replica_killed_mid_answer_has_its_job_answered_by_the_other(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, pg_url: str
) -> None:
    replicas = await start_replicas(tmp_path, slack, model, pg_url)
    try:
        model.pause()
        parent = slack.add_message("C1", "<@UBOT> who finishes this?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        status, _ = await post_event(f"http://127.0.0.1:{replicas[0][1]}", slack.signing_secret, payload)
        assert status == 200
        await model.wait_for_count(1, timeout=10)  # in flight on one of them: acked, not answered
        with psycopg.connect(pg_url) as conn:
            (owner,) = conn.execute("SELECT owner FROM jobs WHERE state = 'running'").fetchone()
        pid = int(owner.split(":")[1])
        victim = next(proc for proc, _ in replicas if proc.pid == pid)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        assert not answers_in(slack, "C1", parent.ts)
        model.resume()
        answers = await wait_answers(slack, "C1", parent.ts, timeout=30)
        assert len(answers) == 1
        await slack.wait_for(lambda f: job_states(pg_url) == {"done": 1}, timeout=10)
        with psycopg.connect(pg_url) as conn:
            (new_owner, attempts) = conn.execute("SELECT owner, attempts FROM jobs").fetchone()
        assert int(new_owner.split(":")[1]) != pid and attempts == 2
    finally:
        model.resume()
        await stop_all(replicas)
    assert len(answers_in(slack, "C1", parent.ts)) == 1
