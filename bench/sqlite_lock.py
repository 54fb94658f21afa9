"""Another process holds the SQLite write lock for 30 s while mentions arrive: fast answers, nothing lost.

    python bench/sqlite_lock.py [--n 40] [--hold 30] [--retry-scale 1.0]

`archbot run` (SQLite, HTTP mode) runs against the fakes. A second process opens the database and
holds its write lock (`BEGIN IMMEDIATE`) for `--hold` seconds; meanwhile `--n` mentions arrive,
evenly spread over the hold, plus `/healthz` probes. This process plays Slack: an event answered
other than 200 is delivered again on Slack's schedule (at once, then after 1 and 5 minutes;
`--retry-scale` shrinks those waits for a quick look). Printed: every delivery attempt's round
trip (p50, p99, max), how many were refused (503) and retried, `/healthz` p99 during the hold, and
whether every question got exactly one answer. Target (issue #13): ack p99 < 1 s, nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.slack_load import pct  # noqa: E402
from bench.vs_template import start  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.fakes.signing import post_event  # noqa: E402
from tests.fakes.slack import FakeSlack, event_callback, mention_event  # noqa: E402
from tests.helpers import answers_in  # noqa: E402

# The delivery, then Slack's three retries: nearly at once, after 1 minute, after 5 minutes.
SLACK_RETRY_WAITS = (0.0, 0.0, 60.0, 300.0)

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", flush=True)
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--model-latency", type=float, default=0.5)
    parser.add_argument("--retry-scale", type=float, default=1.0, help="multiply Slack's retry waits")
    args = parser.parse_args()
    slack = FakeSlack(redeliver_after=None)
    model = FakeAnthropic(first_token_latency=args.model_latency)
    await slack.start()
    await model.start()
    tmp = Path(tempfile.mkdtemp(prefix="archbot-lock-"))
    proc, port = await start("archbot", slack, model, tmp)
    url = f"http://127.0.0.1:{port}"
    attempts: list[float] = []
    refused = 0
    health: list[float] = []
    try:
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLDER, str(tmp / "archbot.db"), str(args.hold), stdout=asyncio.subprocess.PIPE
        )
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"locked"
        locked_at = time.monotonic()
        parents = [slack.add_message("C1", f"<@UBOT> locked question {i}", user="U1") for i in range(args.n)]

        async with aiohttp.ClientSession() as session:

            async def deliver(i: int, parent) -> None:
                nonlocal refused
                await asyncio.sleep(i * args.hold / max(1, args.n))
                payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
                for retry, wait in enumerate(SLACK_RETRY_WAITS):
                    await asyncio.sleep(wait * args.retry_scale)
                    started = time.monotonic()
                    status, _ = await post_event(
                        url, slack.signing_secret, payload, retry_num=retry or None, session=session
                    )
                    attempts.append(time.monotonic() - started)
                    if status == 200:
                        return
                    refused += 1

            async def probe() -> None:
                while time.monotonic() - locked_at < args.hold:
                    started = time.monotonic()
                    async with session.get(f"{url}/healthz") as resp:
                        await resp.read()
                    health.append(time.monotonic() - started)
                    await asyncio.sleep(0.25)

            await asyncio.gather(probe(), *(deliver(i, p) for i, p in enumerate(parents)))
        await holder.wait()
        await slack.wait_for(lambda f: all(answers_in(f, "C1", p.ts) for p in parents) or None, timeout=120)
        await asyncio.sleep(1.0)
        counts = [len(answers_in(slack, "C1", p.ts)) for p in parents]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        await slack.stop()
        await model.stop()
    print(f"write lock held {args.hold:g} s by another process; {args.n} mentions spread over it\n")
    print(
        f"delivery attempts {len(attempts)} (503 refused, redelivered: {refused}); round trip p50"
        f" {pct(attempts, 50) * 1000:.0f} ms, p99 {pct(attempts, 99) * 1000:.0f} ms, max {max(attempts) * 1000:.0f} ms"
    )
    print(f"/healthz during the hold: p99 {pct(health, 99) * 1000:.0f} ms over {len(health)} probes")
    print(
        f"answered exactly once: {sum(c == 1 for c in counts)}/{args.n}; more than once:"
        f" {sum(c > 1 for c in counts)}; lost: {sum(c == 0 for c in counts)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
