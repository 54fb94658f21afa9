"""`archbot stats` on a fixture database seeded through the Store, as the bot would fill it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import Settings
from bot.stats import collect_stats, estimate_cost, index_summary, percentile, resolve_since
from bot.store import Store
from bot.types import Answer, Citation, Usage

LATENCIES = [1000.0, 2000.0, 3000.0, 4000.0, 10000.0]


def _answer_job(
    store: Store,
    *,
    channel: str,
    ts: str,
    latency: float | None,
    kind: str = "answer",
    cited: tuple[str, ...] = (),
    cost: float = 0.01,
    model: str = "claude-sonnet-4-5",
    channel_type: str = "channel",
) -> int:
    job_id = store.enqueue(
        kind="mention", channel=channel, ts=ts, thread_ts=ts, user="U1", text=f"q {ts}", channel_type=channel_type
    )
    assert job_id is not None
    job = store.claim_job()
    assert job is not None and job.id == job_id
    answer = Answer(
        kind=kind,  # type: ignore[arg-type]
        text="a",
        citations=[Citation(path=p, source="docs") for p in cited],
        model=model,
        usage=Usage(input_tokens=1000, output_tokens=200, cache_read_input_tokens=50, cost_usd=cost),
    )
    answer_id = store.record_answer(
        job=job,
        channel=channel,
        thread_ts=ts,
        message_ts=f"{ts}9",
        question=job.text,
        answer=answer,
        latency_ms=latency,
    )
    store.finish_job(job_id, state="failed" if kind == "failure" else "done")
    return answer_id


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    db = tmp_path / "archbot.db"
    store = Store(db)
    for n, latency in enumerate(LATENCIES):
        _answer_job(
            store, channel="C1" if n < 3 else "C2", ts=f"1.{n}", latency=latency, cited=("a.md", "b.md")[: n % 2 + 1]
        )
    # one answer without a recorded cost: priced from the token table
    _answer_job(store, channel="C2", ts="2.0", latency=None, cited=("a.md",), cost=0.0)
    # a failure reply, and a job still queued
    _answer_job(store, channel="G9", ts="3.0", latency=None, kind="failure", channel_type="group")
    store.enqueue(kind="dm", channel="D1", ts="4.0", thread_ts="4.0", user="U2", text="pending", channel_type="im")
    store.record_feedback(channel="C1", message_ts="1.09", user="U1", value="up")
    store.record_feedback(channel="C1", message_ts="1.19", user="U2", value="up")
    store.record_feedback(channel="C2", message_ts="1.39", user="U1", value="down")
    # an old question, outside the default 30-day window
    old = store.enqueue(kind="mention", channel="C3", ts="0.1", thread_ts="0.1", user="U3", text="old")
    store.db.execute("UPDATE jobs SET created_at = ? WHERE id = ?", (time.time() - 90 * 86400, old))
    store.close()
    return db


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([0.0, 10.0], 90) == 9.0


def test_collect_stats_counts_everything(seeded: Path) -> None:
    store = Store(seeded)
    try:
        stats = collect_stats(store, since=time.time() - 86400)
    finally:
        store.close()
    assert stats.questions == 8  # 5 answered + 1 unpriced + 1 failure + 1 queued
    assert stats.questions_by_kind == {"mention": 7, "dm": 1}
    assert stats.answers == 6
    assert stats.answers_by_kind == {"answer": 6, "failure": 1}
    assert stats.failures == 1
    assert stats.pending == 1
    assert stats.latency_ms.count == 5
    assert stats.latency_ms.p50 == 3000.0
    assert stats.latency_ms.p90 == pytest.approx(7600.0)
    assert stats.latency_ms.p99 == pytest.approx(9760.0)
    assert stats.tokens == {"input": 7000, "output": 1400, "cache_read": 350, "cache_creation": 0}
    unpriced = estimate_cost("claude-sonnet-4-5", input_=1000, output=200, cache_read=50, cache_write=0)
    assert stats.cost_estimated
    assert stats.cost_usd == pytest.approx(round(6 * 0.01 + unpriced, 4))
    assert stats.feedback == {"up": 2, "down": 1}
    assert stats.busiest_channels[0] == {"channel": "C1", "channel_type": "channel", "questions": 3}
    assert [c["channel"] for c in stats.busiest_channels] == ["C1", "C2", "D1", "G9"]
    assert stats.most_cited_docs[0] == {"source": "docs", "path": "a.md", "citations": 6}
    assert stats.most_cited_docs[1]["path"] == "b.md"


def test_cli_json_is_one_object(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHBOT_DB", str(seeded))
    result = CliRunner().invoke(cli, ["stats", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["questions"] == 8 and data["answers"] == 6 and data["failures"] == 1
    assert data["latency_ms"]["p50"] == 3000.0
    assert data["feedback"] == {"up": 2, "down": 1}
    assert data["most_cited_docs"][0]["path"] == "a.md"


def test_cli_since_widens_the_window(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHBOT_DB", str(seeded))
    since = datetime.fromtimestamp(time.time() - 120 * 86400).strftime("%Y-%m-%d")
    result = CliRunner().invoke(cli, ["stats", "--since", since, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["questions"] == 9
    assert "C3" in [c["channel"] for c in data["busiest_channels"]]


def test_cli_table(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHBOT_DB", str(seeded))
    monkeypatch.setenv("COLUMNS", "120")
    result = CliRunner().invoke(cli, ["stats"])
    assert result.exit_code == 0, result.output
    for text in ("questions", "p50 3.0 s", "p90 7.6 s", "failures", "busiest channels", "most-cited docs", "a.md"):
        assert text in result.stdout, text


def test_cli_without_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHBOT_DB", str(tmp_path / "none.db"))
    result = CliRunner().invoke(cli, ["stats", "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no database" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_since_is_read_in_the_configured_timezone() -> None:
    settings = Settings(ARCHBOT_TZ="Asia/Shanghai")
    assert resolve_since(settings, datetime(2025, 1, 1)) == datetime.fromisoformat("2025-01-01T00:00+08:00").timestamp()


def test_index_summary(tmp_path: Path) -> None:
    from bot.retrieval.index import index_sources

    settings = Settings(ARCHBOT_DB=str(tmp_path / "ix.db"))
    store = Store(settings.db_path)
    assert index_summary(store) is None
    index_sources(settings)
    summary = index_summary(store)
    store.close()
    assert summary is not None
    assert summary["documents"] > 0 and summary["chunks"] >= summary["documents"]
    assert [s["source"] for s in summary["sources"]] == ["knowledge"]
