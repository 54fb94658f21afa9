"""`archbot stats`: usage figures read from the store, as a table or one JSON object.

Everything here is read-only SQL through `Store.query` (the store stays the only module
that writes). `collect_stats()` returns plain values so the App Home tab and tests can use
the same figures the command prints.

Cost: the architect records `cost_usd` per answer. A row that carries tokens but no cost
is priced here with the architect's list-price table (`bot.architect.pricing`), and the
total is then flagged as partly estimated.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.store import Store
from bot.types import Usage

DEFAULT_DAYS = 30
TOP_N = 5


@dataclass
class Percentiles:
    count: int = 0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


@dataclass
class Stats:
    since: str
    until: str
    questions: int = 0
    questions_by_kind: dict[str, int] = field(default_factory=dict)
    answers: int = 0
    answers_by_kind: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    pending: int = 0
    latency_ms: Percentiles = field(default_factory=Percentiles)
    first_text_ms: Percentiles = field(default_factory=Percentiles)
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    cost_estimated: bool = False
    feedback: dict[str, int] = field(default_factory=dict)
    busiest_channels: list[dict[str, Any]] = field(default_factory=list)
    most_cited_docs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def format_age(seconds: float) -> str:
    """How long ago, for people: "just now", "12 min ago", "3 h ago", "2 days ago"."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return "just now"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    frac = rank - low
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac)


def percentiles(values: list[float]) -> Percentiles:
    ordered = sorted(values)
    return Percentiles(
        count=len(ordered),
        p50=_round(percentile(ordered, 50)),
        p90=_round(percentile(ordered, 90)),
        p99=_round(percentile(ordered, 99)),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def estimate_cost(model: str | None, *, input_: int, output: int, cache_read: int, cache_write: int) -> float:
    """List-price cost from the architect's price table (imported lazily: it pulls in the model SDK)."""
    from bot.architect.pricing import cost_usd

    usage = Usage(
        input_tokens=input_,
        output_tokens=output,
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_write,
    )
    return cost_usd(model or "", usage)


def collect_stats(store: Store, *, since: float, until: float | None = None) -> Stats:
    """Every figure `archbot stats` shows, for answers and jobs created in [since, until)."""
    until = until if until is not None else time.time() + 1
    window = (since, until)
    out = Stats(since=_iso(since), until=_iso(until))

    for row in store.query(
        "SELECT kind, state, COUNT(*) AS n FROM jobs WHERE created_at >= ? AND created_at < ? GROUP BY kind, state",
        window,
    ):
        out.questions += row["n"]
        out.questions_by_kind[row["kind"]] = out.questions_by_kind.get(row["kind"], 0) + row["n"]
        if row["state"] in ("queued", "running"):
            out.pending += row["n"]

    # A failure is a job that ended failed or whose reply was the failure message (counted once),
    # plus failure answers with no job behind them.
    out.failures = store.query(
        "SELECT COUNT(*) AS n FROM jobs WHERE created_at >= ? AND created_at < ? AND (state = 'failed'"
        " OR id IN (SELECT job_id FROM answers WHERE kind = 'failure' AND job_id IS NOT NULL))",
        window,
    )[0]["n"]
    out.failures += store.query(
        "SELECT COUNT(*) AS n FROM answers WHERE created_at >= ? AND created_at < ?"
        " AND kind = 'failure' AND job_id IS NULL",
        window,
    )[0]["n"]

    rows = store.query(
        "SELECT kind, model, latency_ms, first_text_ms, input_tokens, output_tokens, cache_read_input_tokens,"
        " cache_creation_input_tokens, cost_usd FROM answers WHERE created_at >= ? AND created_at < ?",
        window,
    )
    tokens = {"input": 0, "output": 0, "cache_read": 0, "cache_creation": 0}
    latencies: list[float] = []
    first_text: list[float] = []
    for row in rows:
        out.answers_by_kind[row["kind"]] = out.answers_by_kind.get(row["kind"], 0) + 1
        if row["kind"] != "failure":
            out.answers += 1
            if row["latency_ms"] is not None:
                latencies.append(row["latency_ms"])
            if row["first_text_ms"] is not None:
                first_text.append(row["first_text_ms"])
        used = {
            "input": row["input_tokens"] or 0,
            "output": row["output_tokens"] or 0,
            "cache_read": row["cache_read_input_tokens"] or 0,
            "cache_creation": row["cache_creation_input_tokens"] or 0,
        }
        for key, value in used.items():
            tokens[key] += value
        cost = row["cost_usd"] or 0.0
        if cost <= 0 and any(used.values()):
            cost = estimate_cost(
                row["model"],
                input_=used["input"],
                output=used["output"],
                cache_read=used["cache_read"],
                cache_write=used["cache_creation"],
            )
            out.cost_estimated = True
        out.cost_usd += cost
    out.cost_usd = round(out.cost_usd, 4)
    out.tokens = tokens
    out.latency_ms = percentiles(latencies)
    out.first_text_ms = percentiles(first_text)

    feedback = {"up": 0, "down": 0}
    for row in store.query(
        "SELECT value, COUNT(*) AS n FROM feedback WHERE created_at >= ? AND created_at < ? GROUP BY value", window
    ):
        feedback[row["value"] or "other"] = feedback.get(row["value"] or "other", 0) + row["n"]
    out.feedback = feedback

    out.busiest_channels = store.query(
        # A type resolved later (conversations.info) wins over the "unknown" stored at enqueue.
        "SELECT channel, COALESCE(MAX(NULLIF(channel_type, 'unknown')), 'unknown') AS channel_type,"
        " COUNT(*) AS questions FROM jobs"
        " WHERE created_at >= ? AND created_at < ? AND channel_type != 'command'"
        " GROUP BY channel ORDER BY questions DESC, channel LIMIT ?",
        (*window, TOP_N),
    )
    out.most_cited_docs = store.query(
        "SELECT s.source AS source, s.path AS path, COUNT(*) AS citations FROM answer_sources s"
        " JOIN answers a ON a.id = s.answer_id WHERE a.created_at >= ? AND a.created_at < ?"
        " GROUP BY s.source, s.path ORDER BY citations DESC, s.path LIMIT ?",
        (*window, TOP_N * 2),
    )
    return out


def index_summary(store: Store) -> dict[str, Any] | None:
    """What the retrieval index holds, per source: None when it was never built.

    Reads the index's own tables (`ix_files`, `ix_chunks`, see bot/retrieval/schema.py)
    defensively: a missing table or column means "not indexed", never an exception.
    """
    try:
        present = {
            r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE name IN ('ix_files', 'ix_chunks')")
        }
        if "ix_files" not in present:
            return None
        if "ix_chunks" in present:
            rows = store.query(
                "SELECT f.source AS source, COUNT(DISTINCT f.id) AS documents, COUNT(c.id) AS chunks,"
                " MAX(f.indexed_at) AS indexed_at FROM ix_files f LEFT JOIN ix_chunks c ON c.file_id = f.id"
                " GROUP BY f.source ORDER BY f.source"
            )
        else:
            rows = store.query(
                "SELECT source, COUNT(*) AS documents, COALESCE(SUM(chunks), 0) AS chunks,"
                " MAX(indexed_at) AS indexed_at FROM ix_files GROUP BY source ORDER BY source"
            )
    except sqlite3.Error:
        return None
    stamps = [r["indexed_at"] for r in rows if r["indexed_at"]]
    return {
        "documents": sum(r["documents"] for r in rows),
        "chunks": sum(r["chunks"] or 0 for r in rows),
        "indexed_at": max(stamps) if stamps else None,
        "sources": rows,
    }


class _LocalIndex:
    """Read-only queries on the local index file (ARCHBOT_DB) when the conversations are in PostgreSQL."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def local_index_summary(settings: Settings, store: Store) -> dict[str, Any] | None:
    """`index_summary` of this process's retrieval index: in `store` itself with SQLite, in the local
    ARCHBOT_DB file with PostgreSQL (the index is per replica)."""
    if getattr(store, "backend", "sqlite") == "sqlite":
        return index_summary(store)
    if not settings.db_path.exists():
        return None
    try:
        local = _LocalIndex(settings.db_path)
    except sqlite3.Error:
        return None
    try:
        return index_summary(local)  # type: ignore[arg-type]
    finally:
        local.conn.close()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def resolve_since(settings: Settings, since: datetime | None) -> float:
    """A start date from the CLI (naive: read in ARCHBOT_TZ) as a timestamp; default 30 days ago."""
    if since is None:
        return time.time() - DEFAULT_DAYS * 86400
    if since.tzinfo is None:
        since = since.replace(tzinfo=settings.zone)
    return since.timestamp()


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def print_table(stats: Stats, *, db_path: Path) -> None:
    """The readable form: a few rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]archbot stats[/bold]  {stats.since} → {stats.until}  ({db_path})")

    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.questions_by_kind.items()))
    summary.add_row("questions", f"{stats.questions}" + (f"  ({kinds})" if kinds else ""))
    summary.add_row("answers", str(stats.answers))
    summary.add_row("failures", str(stats.failures))
    if stats.pending:
        summary.add_row("queued / running", str(stats.pending))
    lat = stats.latency_ms
    summary.add_row(
        "latency", f"p50 {_fmt_ms(lat.p50)}  p90 {_fmt_ms(lat.p90)}  p99 {_fmt_ms(lat.p99)}  (n={lat.count})"
    )
    ft = stats.first_text_ms
    if ft.count:
        summary.add_row("first text", f"p50 {_fmt_ms(ft.p50)}  p90 {_fmt_ms(ft.p90)}  p99 {_fmt_ms(ft.p99)}")
    t = stats.tokens
    summary.add_row(
        "tokens",
        f"in {t.get('input', 0):,}  out {t.get('output', 0):,}  cache read {t.get('cache_read', 0):,}"
        f"  cache write {t.get('cache_creation', 0):,}",
    )
    summary.add_row("cost", f"${stats.cost_usd:.2f}" + (" (partly estimated)" if stats.cost_estimated else ""))
    extra = {k: v for k, v in stats.feedback.items() if k not in ("up", "down")}
    summary.add_row(
        "feedback",
        f"👍 {stats.feedback.get('up', 0)}  👎 {stats.feedback.get('down', 0)}"
        + "".join(f"  {k} {v}" for k, v in extra.items()),
    )
    console.print(summary)

    if stats.busiest_channels:
        channels = Table(title="busiest channels", title_justify="left")
        channels.add_column("channel")
        channels.add_column("type")
        channels.add_column("questions", justify="right")
        for row in stats.busiest_channels:
            channels.add_row(row["channel"], row["channel_type"] or "", str(row["questions"]))
        console.print(channels)
    if stats.most_cited_docs:
        docs = Table(title="most-cited docs", title_justify="left")
        docs.add_column("source")
        docs.add_column("path")
        docs.add_column("citations", justify="right")
        for row in stats.most_cited_docs:
            docs.add_row(row["source"] or "", row["path"], str(row["citations"]))
        console.print(docs)


def stats_command(settings: Settings, *, since: datetime | None, json_: bool) -> int:
    """`archbot stats`: exit 0, or 1 when there is no database to read."""
    if settings.database_url is None and str(settings.db_path) != ":memory:" and not settings.db_path.exists():
        print(
            f"archbot: no database at {settings.db_path} (run `archbot index` or `archbot run` first)", file=sys.stderr
        )
        return 1
    start = resolve_since(settings, since)
    if start >= time.time():
        print("archbot: --since must be in the past", file=sys.stderr)
        return 2
    from bot.store_async import open_store

    store = open_store(settings)
    try:
        stats = collect_stats(store, since=start)
    finally:
        store.close()
    if json_:
        sys.stdout.write(json.dumps(stats.to_json(), ensure_ascii=False) + "\n")
    else:
        print_table(stats, db_path=settings.db_path)
    return 0
