"""archbot beside a plain Bolt template bot, on the same fakes, in the same run: a burst of mentions.

    python bench/vs_template.py [--n 40] [--model-latency 2.0] [--rate-limit 10] [--repeat 1] [--only plain|429]

Both bots run as real processes over HTTP (signed Events API POSTs); the fake Slack and the fake
model run in this one. `bench/template_bot.py` is the baseline: ack, call the model, stream, no
store, no limit. Two scenarios, each with a fresh pair of fakes per bot:
- `plain`: the model answers every request after `--model-latency` seconds to first token;
- `429>K`: the same model refuses (429 rate_limit_error, retry-after 1 s) any request beyond
  `--rate-limit` in flight, as an account's concurrency limit would.
The burst is sent by bench/burst_client.py, a process of its own, so the round trips it times are
not slowed by the fakes' work on this loop. Printed per bot: client-side ack p50/p99 (the POST
round trip), time to first text p50/p99 and the last one (event sent → first words in the thread),
when the answer's model request reached the model (p50, last; event sent → request), answered /
failed / lost, and archbot's ratios to the template. Targets (issue #13) at 40 at once: ack p99
≤ 0.5× the template's; last first text ≤ 1.5× the template's; with 429>10: 40/40 answered, 0
failures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.slack_load import pct  # noqa: E402
from bench.template_bot import ERROR_TEXT  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.fakes.signing import events_url, sign  # noqa: E402
from tests.fakes.slack import FakeSlack, event_callback, mention_event, message_event  # noqa: E402
from tests.helpers import FAILURE_MARK  # noqa: E402
from tests.test_process import bot_env, free_port  # noqa: E402


async def wait_port(port: int, proc: asyncio.subprocess.Process, path: str) -> None:
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"bot exited with {proc.returncode}")
            try:
                async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                    if resp.status in (200, 404, 405):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("bot never came up")


async def start(
    kind: str, slack: FakeSlack, model: FakeAnthropic, tmp: Path, extra_env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = bot_env(tmp, slack, model, port)
    env["ARCHBOT_LOG_LEVEL"] = "WARNING"
    env.update(extra_env or {})
    log = (tmp / f"{kind}.log").open("wb")
    if kind == "archbot":
        indexer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "index", "--quiet", env=env, cwd=tmp
        )
        await indexer.wait()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, stdout=log, stderr=log, cwd=tmp
        )
        await wait_port(port, proc, "/readyz")
    else:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bench" / "template_bot.py"), str(port), env=env, stdout=log, stderr=log, cwd=tmp
        )
        await wait_port(port, proc, "/slack/events")
    return proc, port


def _signed(secret: str, body: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **sign(secret, body.encode())}


def _chunk_text(chunks: object) -> str:
    """The words in streamed chunks (`markdown_text` ones; task updates are not the answer's text)."""
    if isinstance(chunks, str):
        try:
            chunks = json.loads(chunks)
        except ValueError:
            return ""
    if not isinstance(chunks, list):
        return ""
    return "".join(str(c.get("text") or "") for c in chunks if isinstance(c, dict) and c.get("type") == "markdown_text")


def outcome(slack: FakeSlack, thread_ts: str) -> str | None:
    """'ok', 'failed' or None (nothing final yet) for one question's thread."""
    for m in slack.thread("C1", thread_ts):
        if m.bot_id != slack.bot_id:
            continue
        if m.text.startswith((FAILURE_MARK, ERROR_TEXT)):
            return "failed"
        if m.stream_state == "streaming":
            continue
        if any(b.get("type") == "context_actions" for b in m.blocks or []) or m.stream_state == "stopped":
            return "ok"
    return None


async def run_one(
    kind: str, n: int, latency: float, rate_limit: int | None, extra_env: dict[str, str] | None = None
) -> dict[str, float]:
    slack = FakeSlack(redeliver_after=None)
    model = FakeAnthropic(first_token_latency=latency, max_in_flight=rate_limit)
    await slack.start()
    await model.start()
    tmp = Path(tempfile.mkdtemp(prefix=f"archbot-vs-{kind}-"))
    proc, port = await start(kind, slack, model, tmp, extra_env)
    try:
        parents = [slack.add_message("C1", f"<@UBOT> burst question q{i:03d}", user="U1") for i in range(n)]
        sent: dict[str, float] = {}
        acks: list[float] = []
        # The burst comes from a process of its own (bench/burst_client.py), signed beforehand: a
        # client on this loop would wait behind the fakes serving the bot, and time their work too.
        # Warm-up: one event no bot answers, so Bolt's one-time auth.test is not in the burst.
        chatter = slack.add_message("C1", "just chatting", user="U2")
        warm = json.dumps(event_callback(message_event(chatter.text, channel="C1", user="U2", ts=chatter.ts)))
        requests = []
        for parent in parents:
            body = json.dumps(event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts)))
            requests.append({"key": parent.ts, "body": body, "headers": _signed(slack.signing_secret, body)})
        plan = {
            "url": events_url(f"http://127.0.0.1:{port}"),
            "warmup": {"body": warm, "headers": _signed(slack.signing_secret, warm)},
            "requests": requests,
        }
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bench" / "burst_client.py"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(json.dumps(plan).encode() + b"\n")
        await client.stdin.drain()
        assert (await client.stdout.readline()).strip() == b"ready"
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        timings = json.loads(await client.stdout.readline())
        await client.wait()
        for key, (at, seconds, status) in timings.items():
            assert status == 200, status
            sent[key] = at
            acks.append(seconds)
        with contextlib.suppress(TimeoutError, AssertionError):  # what is still missing is reported as lost
            await slack.wait_for(lambda f: all(outcome(f, p.ts) for p in parents) or None, timeout=180)
        first: dict[str, float] = {}
        for call in slack.calls:
            if call.method in ("chat.startStream", "chat.postMessage", "chat.appendStream") and not call.failed:
                thread = str(call.args.get("thread_ts") or "")
                if not thread and call.args.get("ts"):  # appendStream names the stream's message
                    message = slack.message("C1", str(call.args["ts"]))
                    thread = str(message.thread_ts or "") if message is not None else ""
                text = str(
                    call.args.get("markdown_text") or call.args.get("text") or _chunk_text(call.args.get("chunks"))
                )
                if thread in sent and thread not in first and text and not text.startswith((FAILURE_MARK, ERROR_TEXT)):
                    first[thread] = call.at - sent[thread]
        outcomes = [outcome(slack, p.ts) for p in parents]
        # When each question's answer request reached the model (streamed requests: not rewrites).
        asked: dict[str, float] = {}
        by_text = {p.text.rsplit(" ", 1)[1]: p.ts for p in parents}  # "q007"
        for request in model.requests:
            if request.path != "/v1/messages" or not request.stream:
                continue
            body = json.dumps(request.body)
            for text, ts in by_text.items():
                if ts not in asked and text in body:
                    asked[ts] = request.at - sent[ts]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
        await slack.stop()
        await model.stop()
    firsts = list(first.values())
    return {
        "ack_p50": pct(acks, 50) * 1000,
        "ack_p99": pct(acks, 99) * 1000,
        "ft_p50": pct(firsts, 50),
        "ft_p99": pct(firsts, 99),
        "ft_last": max(firsts) if firsts else float("nan"),
        "asked_p50": pct(list(asked.values()), 50),
        "asked_last": max(asked.values()) if asked else float("nan"),
        "ok": outcomes.count("ok"),
        "failed": outcomes.count("failed"),
        "lost": outcomes.count(None),
        "refused": model.rate_limited,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--model-latency", type=float, default=2.0, help="fake model time to first token (s)")
    parser.add_argument("--rate-limit", type=int, default=10, help="the 429 scenario: requests allowed in flight")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--search-workers", type=int, default=None, help="archbot's ARCHBOT_SEARCH_WORKERS")
    parser.add_argument("--only", choices=("plain", "429"), help="run one scenario only")
    args = parser.parse_args()
    print(f"{args.n} mentions at once, model {args.model_latency:g} s to first token\n")
    print(
        f"{'scenario':<8} {'bot':<8} {'ack p50':>8} {'ack p99':>8} {'1st p50':>8} {'1st p99':>8} {'1st last':>8}"
        f" {'ask p50':>8} {'ask last':>8} {'ok':>4} {'fail':>4} {'lost':>4} {'429s':>5}"
    )
    scenarios = [("plain", None), (f"429>{args.rate_limit}", args.rate_limit)]
    if args.only:
        scenarios = scenarios[:1] if args.only == "plain" else scenarios[1:]
    for scenario, limit in scenarios:
        for _ in range(args.repeat):
            results = {}
            for kind in ("template", "archbot"):
                extra = {"ARCHBOT_SEARCH_WORKERS": str(args.search_workers)} if args.search_workers is not None else {}
                r = results[kind] = await run_one(kind, args.n, args.model_latency, limit, extra)
                print(
                    f"{scenario:<8} {kind:<8} {r['ack_p50']:>6.1f}ms {r['ack_p99']:>6.1f}ms {r['ft_p50']:>7.2f}s"
                    f" {r['ft_p99']:>7.2f}s {r['ft_last']:>7.2f}s {r['asked_p50']:>7.2f}s {r['asked_last']:>7.2f}s"
                    f" {r['ok']:>4} {r['failed']:>4} {r['lost']:>4} {r['refused']:>5}",
                    flush=True,
                )
            a, t = results["archbot"], results["template"]
            print(
                f"{'':<8} ratios archbot/template: ack p50 {a['ack_p50'] / t['ack_p50']:.2f}×, ack p99"
                f" {a['ack_p99'] / t['ack_p99']:.2f}×, first text p99 {a['ft_p99'] / t['ft_p99']:.2f}×,"
                f" last first text {a['ft_last'] / t['ft_last']:.2f}×\n",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
