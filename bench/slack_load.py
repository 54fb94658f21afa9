"""Load benchmark: N simultaneous mentions, over HTTP and over Socket Mode, against the fakes.

    python bench/slack_load.py [--n 40] [--model-latency 0.5] [--transport both|http|socket]

The bot runs as a real `archbot run` process; the fake Slack and fake model run in this one.
The model answers after a fixed time to first token, so what is left is the bot's own cost.
Printed per transport:
- ack latency p50/p99 as Slack would see it (HTTP: the POST round trip, new connections included;
  Socket Mode: envelope sent → ack received), and the bot's own ack time p99 from its
  `archbot_ack_seconds` histogram (the upper bound of the bucket holding it);
- sign of work p50/p99: event sent → the 👀 reaction on the question (added right after enqueue);
- queue wait p50/p99: event sent → a worker starts the job (ARCHBOT_CONCURRENCY caps model calls);
- bot overhead p50/p99: job start → first visible text in the thread, minus the model's own time to
  first token (context fetch, search, prompt building, streaming into Slack);
- answers per second, and whether every question got exactly one answer;
- the bot process's peak RSS (VmHWM).
Targets (issue #3): ack p99 < 50 ms with 40 at once; overhead p50 < 300 ms; 200 → 200 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.fakes.signing import post_event  # noqa: E402
from tests.fakes.slack import FakeSlack, event_callback, mention_event  # noqa: E402
from tests.helpers import answers_in  # noqa: E402
from tests.test_process import bot_env, free_port  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def histogram_quantile(metrics_text: str, name: str, q: float) -> float:
    """The upper bound of the bucket holding quantile q of a Prometheus histogram (as PromQL would bound it)."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    total = buckets[-1][1]
    return next(le for le, count in sorted(buckets) if count >= q * total)


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def run_transport(
    transport: str, n: int, latency: float, concurrency: int, rewrite: bool = False
) -> dict[str, float | str]:
    slack = FakeSlack(redeliver_after=None)
    model = FakeAnthropic(first_token_latency=latency)
    await slack.start()
    await model.start()
    tmp = Path(tempfile.mkdtemp(prefix="archbot-bench-"))
    port = free_port()
    env = bot_env(tmp, slack, model, port)
    env.update(
        {
            "ARCHBOT_CONCURRENCY": str(concurrency),
            "ARCHBOT_LOG_LEVEL": "WARNING",
            # The query rewrite (off by default) is a model call with the same fixed latency: --rewrite.
            "ARCHBOT_QUERY_REWRITE": "true" if rewrite else "false",
        }
    )
    if transport == "socket":
        env["SLACK_APP_TOKEN"] = slack.app_token
    # Build the index first, as the container does, so start-up indexing does not compete with the load.
    indexer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "index", "--quiet", env=env, cwd=str(tmp)
    )
    await indexer.wait()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(tmp / "bot.log").open("wb"),
        cwd=str(tmp),
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            if transport == "socket":
                await asyncio.wait_for(slack.socket_connected.wait(), 30)

            parents = [slack.add_message("C1", f"<@UBOT> benchmark question {i}", user="U1") for i in range(n)]
            sent_at: dict[str, float] = {}
            acks: list[float] = []

            async def deliver(parent) -> None:
                payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
                sent_at[parent.ts] = time.monotonic()
                if transport == "http":
                    started = time.monotonic()
                    status, _ = await post_event(
                        f"http://127.0.0.1:{port}", slack.signing_secret, payload, session=session
                    )
                    assert status == 200, status
                    acks.append(time.monotonic() - started)
                else:
                    envelope = await slack.socket_send_event(payload)
                    ack = await slack.wait_for_ack(envelope, timeout=30)
                    sent = next(e.sent_at for e in slack.envelopes if e.envelope_id == envelope)
                    acks.append(ack.at - sent)

            t0 = time.monotonic()
            await asyncio.gather(*(deliver(p) for p in parents))
            await slack.wait_for(
                lambda f: all(answers_in(f, "C1", p.ts) for p in parents), timeout=max(60.0, n * latency)
            )
            elapsed = time.monotonic() - t0
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                server_p99 = histogram_quantile(await resp.text(), "archbot_ack_seconds", 0.99)
            exactly_once = all(len(answers_in(slack, "C1", p.ts)) == 1 for p in parents)
            first_visible: dict[str, float] = {}
            for call in slack.calls:
                if call.method in ("chat.startStream", "chat.postMessage") and not call.failed:
                    thread = str(call.args.get("thread_ts") or "")
                    if thread in sent_at and thread not in first_visible:
                        first_visible[thread] = call.at
            reacted: dict[str, float] = {}
            for call in slack.calls_to("reactions.add"):
                reacted.setdefault(str(call.args.get("timestamp")), call.at)
            # jobs.started_at is wall-clock; the fake's times are monotonic (one clock for all processes).
            offset = time.time() - time.monotonic()
            import sqlite3

            with sqlite3.connect(tmp / "archbot.db") as db:
                started = {ts: at - offset for ts, at in db.execute("SELECT ts, started_at FROM jobs")}
            sign = [reacted[ts] - sent_at[ts] for ts in sent_at if ts in reacted]
            queue = [started[ts] - sent_at[ts] for ts in sent_at if ts in started]
            overhead = [first_visible[ts] - started[ts] - latency for ts in first_visible if ts in started]
            rss = peak_rss_mb(proc.pid or 0)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)
        await slack.stop()
        await model.stop()
    return {
        "transport": transport,
        "n": n,
        "ack_p50_ms": pct(acks, 50) * 1000,
        "ack_p99_ms": pct(acks, 99) * 1000,
        "server_ack_p99_ms": server_p99 * 1000,
        "sign_p50_ms": pct(sign, 50) * 1000,
        "sign_p99_ms": pct(sign, 99) * 1000,
        "queue_p50_ms": pct(queue, 50) * 1000,
        "queue_p99_ms": pct(queue, 99) * 1000,
        "overhead_p50_ms": pct(overhead, 50) * 1000,
        "overhead_p99_ms": pct(overhead, 99) * 1000,
        "answers_per_s": n / elapsed,
        "exactly_once": "yes" if exactly_once else "NO",
        "peak_rss_mb": rss,
        "mean_ack_ms": statistics.fmean(acks) * 1000 if acks else float("nan"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[40, 200])
    parser.add_argument("--model-latency", type=float, default=0.5, help="fake model time to first token (s)")
    parser.add_argument("--transport", choices=["both", "http", "socket"], default="both")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (each a fresh bot)")
    parser.add_argument("--rewrite", action="store_true", help="keep the model query rewrite on (one more call)")
    args = parser.parse_args()
    transports = ["http", "socket"] if args.transport == "both" else [args.transport]
    print(
        f"{'transport':<9} {'n':>4} {'ack p50':>8} {'ack p99':>8} {'srv p99≤':>8} {'sign p50':>9} {'sign p99':>9} "
        f"{'queue p50':>9} {'queue p99':>9} {'ovh p50':>8} {'ovh p99':>8} {'ans/s':>6} {'once':>5} {'RSS MB':>7}"
    )
    for n in args.n:
        for transport in [t for t in transports for _ in range(args.repeat)]:
            r = await run_transport(transport, n, args.model_latency, args.concurrency, args.rewrite)
            print(
                f"{r['transport']:<9} {r['n']:>4} {r['ack_p50_ms']:>6.1f}ms {r['ack_p99_ms']:>6.1f}ms "
                f"{r['server_ack_p99_ms']:>6.0f}ms "
                f"{r['sign_p50_ms']:>7.0f}ms {r['sign_p99_ms']:>7.0f}ms "
                f"{r['queue_p50_ms']:>7.0f}ms {r['queue_p99_ms']:>7.0f}ms "
                f"{r['overhead_p50_ms']:>6.0f}ms {r['overhead_p99_ms']:>6.0f}ms {r['answers_per_s']:>6.1f} "
                f"{r['exactly_once']:>5} {r['peak_rss_mb']:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
