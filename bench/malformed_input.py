"""Malformed-input benchmark: hostile and broken requests against a real `archbot run` (HTTP mode).

    python bench/malformed_input.py [--verbose]

The bot runs as a real process against the fake Slack and fake model in this one. Every case is
fired at `POST /slack/events`; printed per group: cases tried, 2xx / 4xx / 5xx answers, and the
expected class. Then: responses that carried a traceback, ERROR lines in the bot's log, whether
`/healthz` still answers, the number of `archbot_events_received` series (unknown event types must
not create new ones), and whether a valid mention sent afterwards is still answered.

Groups:
- unsigned: forged, stale, missing or non-numeric signature headers (expect 401);
- malformed: signed bodies that are not a Slack request (bad JSON, non-UTF-8, arrays, deep
  nesting, `payload=` garbage, url_verification oddities; expect 4xx);
- odd-shaped: signed, well-formed JSON events of shapes Slack never sends (expect 200: acked,
  ignored and counted, so Slack does not redeliver them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from tests.fakes.hostile import Case, build_cases, fire  # noqa: E402
from tests.fakes.signing import post_event  # noqa: E402
from tests.fakes.slack import FakeSlack, event_callback, mention_event  # noqa: E402
from tests.helpers import answers_in  # noqa: E402
from tests.test_process import bot_env, free_port  # noqa: E402


async def run(verbose: bool) -> int:
    slack = FakeSlack(redeliver_after=None)
    model = FakeAnthropic()
    await slack.start()
    await model.start()
    tmp = Path(tempfile.mkdtemp(prefix="archbot-malformed-"))
    port = free_port()
    env = bot_env(tmp, slack, model, port)
    env.update({"ARCHBOT_LOG_LEVEL": "INFO", "ARCHBOT_LOG_FORMAT": "text"})
    log_path = tmp / "bot.log"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=log_path.open("wb"),
        stderr=asyncio.subprocess.STDOUT,
        cwd=str(tmp),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            log_offset = log_path.stat().st_size
            results: list[tuple[Case, int, str]] = []
            for case in build_cases(slack.signing_secret):
                try:
                    status, text = await fire(session, f"{base}/slack/events", slack.signing_secret, case)
                except aiohttp.ClientError as exc:
                    status, text = 599, f"connection error: {type(exc).__name__}"
                results.append((case, status, text))
            async with session.get(f"{base}/healthz") as resp:
                healthy = resp.status == 200
            async with session.get(f"{base}/metrics") as resp:
                metrics_text = await resp.text()
            parent = slack.add_message("C1", "<@UBOT> still there after all that?", user="U1")
            payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
            status, _ = await post_event(base, slack.signing_secret, payload, session=session)
            try:
                await slack.wait_for(lambda f: answers_in(f, "C1", parent.ts), timeout=30)
                answered = status == 200
            except TimeoutError:
                answered = False
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)
        await slack.stop()
        await model.stop()

    log_lines = log_path.read_bytes()[log_offset:].decode("utf-8", "replace").splitlines()
    errors = [line for line in log_lines if " ERROR " in line or '"level": "ERROR"' in line]
    tracebacks_in_log = sum("Traceback" in line for line in log_lines)
    leaked = [case.name for case, _, text in results if "Traceback" in text or 'File "' in text]
    series = sum(1 for line in metrics_text.splitlines() if line.startswith("archbot_events_received_total{"))
    expected = {"unsigned": "401", "malformed": "4xx", "odd-shaped": "200 (ignored)"}
    print(f"{'group':<11} {'tried':>5} {'2xx':>4} {'4xx':>4} {'5xx':>4}  expected")
    total = [0, 0, 0, 0]
    for group in ("unsigned", "malformed", "odd-shaped"):
        rows = [status for case, status, _ in results if case.group == group]
        counts = [
            len(rows),
            sum(200 <= s < 300 for s in rows),
            sum(400 <= s < 500 for s in rows),
            sum(s >= 500 for s in rows),
        ]
        total = [a + b for a, b in zip(total, counts, strict=True)]
        print(f"{group:<11} {counts[0]:>5} {counts[1]:>4} {counts[2]:>4} {counts[3]:>4}  {expected[group]}")
    print(f"{'all':<11} {total[0]:>5} {total[1]:>4} {total[2]:>4} {total[3]:>4}")
    off = [
        (case, status)
        for case, status, _ in results
        if (case.group == "unsigned" and status != 401)
        or (case.group == "malformed" and not 400 <= status < 500)
        or (case.group == "odd-shaped" and status != 200)
    ]
    print(f"unexpected statuses: {len(off)}")
    for case, status in off if verbose else off[:40]:
        print(f"  {status}  {case.group}: {case.name}")
    print(f"responses with a traceback: {len(leaked)}")
    print(f"ERROR log lines: {len(errors)} (tracebacks in log: {tracebacks_in_log})")
    if verbose:
        for line in errors[:20]:
            print("  " + line[:200])
    print(f"/healthz after: {'200' if healthy else 'FAILED'}")
    print(f"archbot_events_received series: {series}")
    print(f"valid mention answered after: {'yes' if answered else 'NO'}")
    gated, alone = intake_cost(slack.signing_secret)
    print(f"intake cost per valid mention: {gated:.0f} µs median (Bolt's own parse + signature check: {alone:.0f} µs)")
    return 0 if not off and not leaked and healthy and answered else 1


def intake_cost(secret: str, rounds: int = 2000) -> tuple[float, float]:
    """Median µs per valid mention: the intake gates (signature on the raw body, parse, shape
    check) against what Bolt did alone before (parse into its request, then verify the signature)."""
    from slack_bolt.request.async_request import AsyncBoltRequest
    from slack_sdk.signature import SignatureVerifier

    from bot.metrics import Metrics
    from bot.slack.intake import parse_http_body, screen, verify_http_request
    from tests.fakes.signing import sign

    body = json.dumps(
        event_callback(mention_event("<@UBOT> how should billing retry? " * 4, channel="C1", user="U1", ts="1.1"))
    ).encode()
    headers = {"Content-Type": "application/json", **sign(secret, body)}
    verifier = SignatureVerifier(secret)
    metrics = Metrics()

    def gated() -> None:
        assert verify_http_request(body, headers, verifier)
        request = parse_http_body(body, query="", headers=headers)
        assert not isinstance(request, str) and screen(request.body, metrics) is None

    def bolt_alone() -> None:
        request = AsyncBoltRequest(body=body.decode(), query="", headers=headers)
        assert verifier.is_valid_request(request.raw_body, headers)

    out = []
    for fn in (gated, bolt_alone):
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e6)
        out.append(statistics.median(samples))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="list every unexpected answer and ERROR line")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.verbose)))


if __name__ == "__main__":
    main()
