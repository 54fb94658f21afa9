"""The stored text's re-redaction (bot/store.py, "stored text swept again"): how long a sweep of an
older install's database takes, and what it costs the ack path meanwhile.

    python bench/stored_sweep.py [--threads 5000] [--runs 2] [--postgres URL]

Fills a fresh database (SQLite by default; PostgreSQL at URL, e.g. from `python -m tests.pg_server
--shell`) with --threads answered threads as an older install left them (a job, an answer of
~2 KB, a gap and a feedback comment each; one in ten holding a credential), past the store's
write-time redaction. Then sweeps it as `archbot run` does (`run_sweep`: each step's read and
write on the store's thread, its redaction in another) while an ack-path probe
(`quick.queue_depth()`) runs every 20 ms, and prints the sweep's time, rows per second and
longest read or write on the store, and the probe's latency percentiles during the sweep against
the same probe without a sweep (the same run's baseline). Last, a second full sweep over the
already redacted rows (what a detector bump that finds nothing new costs). Medians over --runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.redaction import detector_version, warm_up  # noqa: E402
from bot.store import Store, Sweep  # noqa: E402
from bot.store_async import AsyncStore, run_sweep  # noqa: E402

ANSWER = (
    "Put the orders service's writes behind an outbox (thread {i}): the transaction that changes an order "
    "also inserts its event, and a relay publishes it. Consumers must be idempotent: keep the last "
    "processed event id per aggregate.\n\n"
) * 6


def fill(store: Store, threads: int) -> None:
    with store._tx() as db:  # past the writing methods' redaction, as an older install wrote
        for i in range(threads):
            secret = f" DB_PASSWORD=Zq7planted{i:06d}x" if i % 10 == 0 else ""
            ts = f"{1700000000 + i}.000100"
            job = db.execute(
                "INSERT INTO jobs (kind, channel, ts, thread_ts, user, text, state, attempts, created_at, meta)"
                " VALUES ('mention','C1',?,?,'U1',?,'done',1,?,?)",
                (ts, ts, f"<@UBOT> how do we keep order events consistent? #{i}{secret}", 1.0e9 + i, None),
            ).lastrowid
            answer = db.execute(
                "INSERT INTO answers (job_id, channel, thread_ts, message_ts, kind, question, text, topic, decision,"
                " created_at) VALUES (?,'C1',?,?,'answer',?,?,?,?,?)",
                (
                    job,
                    ts,
                    f"{ts}9",
                    f"how do we keep order events consistent? #{i}{secret}",
                    ANSWER.format(i=i) + secret,
                    f"outbox {i}",
                    f"use an outbox for orders ({i})",
                    1.0e9 + i,
                ),
            ).lastrowid
            db.execute(
                "INSERT INTO gaps (answer_id, kind, description, created_at) VALUES (?, 'gap', ?, ?)",
                (answer, f"no ADR on the relay's retry policy ({i})", 1.0e9 + i),
            )
            db.execute(
                "INSERT INTO feedback (answer_id, channel, message_ts, user, value, comment, created_at)"
                " VALUES (?,'C1',?,'U2','up',?,?)",
                (answer, f"{ts}9", f"helpful, thanks ({i}){secret}", 1.0e9 + i),
            )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def probe(store: AsyncStore, stop: asyncio.Event) -> list[float]:
    """The ack path's latency: a small urgent store call every 20 ms until `stop`."""
    out: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        await store.quick.queue_depth()
        out.append((time.perf_counter() - started) * 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.02)
    return out


async def sweep_with_probe(store: AsyncStore, sweep: Sweep | None) -> tuple[Sweep | None, list[float]]:
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(store, stop))
    if sweep is not None:
        sweep = await run_sweep(store, sweep)  # as `archbot run` does (store_async.sweep_stored_text)
    stop.set()
    return sweep, await probing


async def baseline(store: AsyncStore, seconds: float) -> list[float]:
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(store, stop))
    await asyncio.sleep(seconds)  # the probe's own pace, for as long as the sweep took
    stop.set()
    return await probing


def open_fresh(postgres: str | None, tmp: Path, run: int) -> Store:
    if postgres is None:
        return Store(tmp / f"sweep{run}.db", busy_timeout=0.1)
    from bot.store_pg import PgStore
    from tests.pg_server import create_database

    return PgStore(create_database(postgres))


async def one_run(postgres: str | None, tmp: Path, run: int, threads: int) -> dict[str, Any]:
    sync = open_fresh(postgres, tmp, run)
    store = AsyncStore(sync)
    try:
        filled = time.perf_counter()
        await store.run(fill, sync, threads)
        fill_s = time.perf_counter() - filled
        sweep, during = await sweep_with_probe(store, await store.start_sweep())
        assert sweep is not None and sweep.done
        calm = await baseline(store, sweep.seconds)
        again, _ = await sweep_with_probe(store, Sweep(version=detector_version()))
        assert again is not None and again.changed == 0
        left = await store.query("SELECT COUNT(*) AS n FROM answers WHERE text LIKE '%Zq7planted%'")
        assert left[0]["n"] == 0
        return {
            "fill_s": fill_s,
            "rows": sweep.rows,
            "changed": sweep.changed,
            "sweep_s": sweep.seconds,
            "longest_hold_ms": sweep.longest_hold * 1000,
            "probe_p50_ms": pct(during, 0.5),
            "probe_p99_ms": pct(during, 0.99),
            "probe_max_ms": max(during),
            "base_p50_ms": pct(calm, 0.5),
            "base_p99_ms": pct(calm, 0.99),
            "base_max_ms": max(calm),
            "again_s": again.seconds,
        }
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (a fresh database per run)")
    args = parser.parse_args()
    warm_up()  # as `archbot run` does before the sweep starts
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            results.append(asyncio.run(one_run(args.postgres, Path(tmp), run, args.threads)))
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    backend = "postgresql" if args.postgres else "sqlite"
    print(f"{backend}: {args.threads} threads, {median['rows']:.0f} rows, {median['changed']:.0f} values rewritten")
    print(f"  sweep {median['sweep_s']:.2f} s ({median['rows'] / median['sweep_s']:.0f} rows/s), "
          f"longest read or write {median['longest_hold_ms']:.0f} ms; second sweep {median['again_s']:.2f} s")
    print(f"  ack probe during the sweep: p50 {median['probe_p50_ms']:.1f} ms, p99 {median['probe_p99_ms']:.1f} ms, "
          f"max {median['probe_max_ms']:.1f} ms")
    print(f"  ack probe without a sweep:  p50 {median['base_p50_ms']:.1f} ms, p99 {median['base_p99_ms']:.1f} ms, "
          f"max {median['base_max_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
