"""Send a burst of signed Slack requests from a process of its own, and time each round trip.

    python bench/burst_client.py < plan.json

The plan (JSON on stdin): ``{"url": ..., "warmup": {"body": ..., "headers": {...}} | null,
"requests": [{"key": ..., "body": ..., "headers": {...}}, ...]}``, bodies already signed. The
client sends the warm-up request, prints ``ready``, waits for a line on stdin, then sends every
request at once and prints one JSON object: ``{key: [sent, seconds, status]}``, where ``sent`` is
`time.monotonic()` (one clock for every process on Linux, so the caller can set it against the
fake Slack's call times).

Why a process of its own: the benchmarks' fakes (Slack, the model) serve the bot from the
caller's event loop; a client on that loop waits behind them, and every ack it times then holds
the fakes' work too. Slack's own sender is not slowed by the bot's other calls.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main() -> None:
    plan = json.loads(sys.stdin.readline())
    url = plan["url"]
    results: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as session:
        if plan.get("warmup"):
            warm = plan["warmup"]
            async with session.post(url, data=warm["body"].encode(), headers=warm["headers"]) as response:
                await response.read()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def send(item: dict[str, object]) -> None:
            body = str(item["body"]).encode()
            headers = dict(item["headers"])  # type: ignore[call-overload]
            sent = time.monotonic()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                results[str(item["key"])] = [sent, time.monotonic() - sent, response.status]

        await asyncio.gather(*(send(item) for item in plan["requests"]))
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
