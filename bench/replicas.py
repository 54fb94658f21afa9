"""Replicas on PostgreSQL: a burst spread over N `archbot run` processes, one SIGKILLed halfway.

    python bench/replicas.py [--n 200] [--replicas 3] [--model-latency 0.5]

Starts a throwaway PostgreSQL server (tests/pg_server.py; or ARCHBOT_TEST_DATABASE_URL), the fake
Slack and the fake model. First the baseline: the same burst against one replica alone. Then N
replicas on one database: every mention is delivered at once, round-robin (a load balancer), and
when half of the questions have their answer one replica is SIGKILLed. Slack would redeliver an
event the dead replica never acked; here every event was acked before the kill, so what is
measured is the durable queue: the dead replica's claimed jobs are resumed by the others once
its heartbeat stops (ARCHBOT_HEARTBEAT_SECONDS, 3 missed beats).

Printed: answered exactly once / more than once / lost, failures, answers per second, the time
until the last answer, and how many jobs were resumed from the dead replica.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.vs_template import outcome, wait_port  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.fakes.signing import post_event  # noqa: E402
from tests.fakes.slack import FakeSlack, event_callback, mention_event  # noqa: E402
from tests.helpers import answers_in  # noqa: E402
from tests.pg_server import ENV_URL, TempPostgres, create_database  # noqa: E402
from tests.test_process import bot_env, free_port  # noqa: E402


async def start_replica(slack: FakeSlack, model: FakeAnthropic, url: str, home: Path, heartbeat: float):
    home.mkdir(parents=True)
    port = free_port()
    env = bot_env(home, slack, model, port)
    env.update(
        {"ARCHBOT_DATABASE_URL": url, "ARCHBOT_HEARTBEAT_SECONDS": str(heartbeat), "ARCHBOT_LOG_LEVEL": "WARNING"}
    )
    indexer = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "index", "--quiet", env=env, cwd=home)
    await indexer.wait()
    log = (home / "bot.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, stdout=log, stderr=log, cwd=home
    )
    await wait_port(port, proc, "/readyz")
    return proc, port


async def run(n: int, replicas: int, latency: float, server_url: str, *, kill: bool, heartbeat: float) -> dict:
    slack = FakeSlack(redeliver_after=None)
    model = FakeAnthropic(first_token_latency=latency)
    await slack.start()
    await model.start()
    url = create_database(server_url)
    tmp = Path(tempfile.mkdtemp(prefix="archbot-replicas-"))
    procs = list(
        await asyncio.gather(*(start_replica(slack, model, url, tmp / f"r{i}", heartbeat) for i in range(replicas)))
    )
    victim_pid = None
    try:
        parents = [slack.add_message("C1", f"<@UBOT> replica question {i}", user="U1") for i in range(n)]
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as session:

            async def deliver(i: int, parent) -> int:
                payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
                status, _ = await post_event(
                    f"http://127.0.0.1:{procs[i % replicas][1]}", slack.signing_secret, payload, session=session
                )
                return status

            statuses = await asyncio.gather(*(deliver(i, p) for i, p in enumerate(parents)))
        assert all(s == 200 for s in statuses), statuses
        if kill:
            await slack.wait_for(lambda f: sum(1 for p in parents if outcome(f, p.ts)) >= n // 2 or None, timeout=300)
            victim, _ = procs[-1]
            victim_pid = victim.pid
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
        await slack.wait_for(lambda f: all(outcome(f, p.ts) for p in parents) or None, timeout=300)
        elapsed = time.monotonic() - t0
        await asyncio.sleep(1.0)  # anything posted twice would show up now
        counts = [len(answers_in(slack, "C1", p.ts)) for p in parents]
        outcomes = [outcome(slack, p.ts) for p in parents]
        with psycopg.connect(url) as conn:
            resumed = conn.execute("SELECT COUNT(*) FROM jobs WHERE attempts > 1").fetchone()[0]
    finally:
        for proc, _ in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
        await slack.stop()
        await model.stop()
    return {
        "once": sum(1 for c in counts if c == 1),
        "twice": sum(1 for c in counts if c > 1),
        "lost": sum(1 for c in counts if c == 0),
        "failed": outcomes.count("failed"),
        "seconds": elapsed,
        "per_s": n / elapsed,
        "resumed": resumed,
        "killed": victim_pid,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--model-latency", type=float, default=0.5)
    parser.add_argument("--heartbeat", type=float, default=1.0, help="ARCHBOT_HEARTBEAT_SECONDS for the replicas")
    args = parser.parse_args()
    server = None
    server_url = os.environ.get(ENV_URL)
    if not server_url:
        server = TempPostgres()
        server_url = server.start()
    try:
        print(f"{args.n} mentions at once, model {args.model_latency:g} s to first token, PostgreSQL\n")
        print(f"{'setup':<28} {'once':>5} {'twice':>5} {'lost':>5} {'fail':>5} {'secs':>6} {'ans/s':>6} {'resumed':>7}")
        for label, replicas, kill in (
            ("1 replica (baseline)", 1, False),
            (f"{args.replicas} replicas", args.replicas, False),
            (f"{args.replicas} replicas, 1 SIGKILLed", args.replicas, True),
        ):
            r = await run(args.n, replicas, args.model_latency, server_url, kill=kill, heartbeat=args.heartbeat)
            print(
                f"{label:<28} {r['once']:>5} {r['twice']:>5} {r['lost']:>5} {r['failed']:>5} {r['seconds']:>6.1f}"
                f" {r['per_s']:>6.1f} {r['resumed']:>7}",
                flush=True,
            )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
