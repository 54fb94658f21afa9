"""Grounding (issue #10): provenance, service recognition, document-level ranking, context assembly.

Small fixture docs written here, indexed into a real SQLite index in a temp dir; assertions are on
what `Searcher.context` returns (the passages the model is sent) and what `search` ranks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.config import Settings
from bot.retrieval import Searcher, index_sources
from bot.retrieval.assemble import Doc, Section, assemble
from bot.retrieval.chunking import parse
from bot.retrieval.provenance import detect_status, doc_date, git_dates, stated_date
from bot.retrieval.text import fold
from bot.tokens import estimate_tokens, open_fence


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# -- provenance -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rel", "title", "text", "status"),
    [
        ("backend/billing-service/README.md", "Billing service", "# Billing service\n\nCharges users.", "current"),
        ("docs/archive/phase-reports/PHASE2.md", "Phase 2", "# Phase 2\n\nDone.", "archived"),
        ("docs/old-summaries/X.md", "X", "# X\n\ntext", "archived"),
        ("docs/RETRY.md", "Retry", "# Retry\n\n> Status: deprecated, see RETRY_V2.md\n\ntext", "archived"),
        ("docs/SMS_DESIGN.md", "SMS", "# SMS\n\n> **状态**: 技术方案 - 待评审\n\ntext", "proposal"),
        ("docs/MIGRATION_PLAN.md", "Migration", "# Migration\n\ntext", "proposal"),
        ("docs/JWT_AUTH_COMPLETE.md", "JWT", "# JWT\n\ntext", "report"),
        ("docs/GPU.md", "GPU 资源管理模块完成报告", "# GPU 资源管理模块完成报告\n\ntext", "report"),
        # a deprecated *part* mentioned further down does not retire the whole document
        ("database/README.md", "Scripts", "# Scripts\n\nintro\n\nmore\n\nlines\n\n#### old.sql ⚠️ 已废弃", "current"),
    ],
)
def test_status_detection(rel: str, title: str, text: str, status: str) -> None:
    assert detect_status(rel, title, text) == status


def test_dates_from_git_then_the_doc_then_mtime(tmp_path: Path) -> None:
    assert stated_date("# Report\n\n**日期**: 2025年11月3日\n") == "2025-11-03"
    assert stated_date("# Report\n\nLast updated: 2025-10-30\n") == "2025-10-30"
    assert stated_date("# Report\n\nno date here\n") is None
    mtime = 1_700_000_000 * 10**9  # 2023-11-14
    assert doc_date(rel="a.md", text="x", mtime_ns=mtime, git={"a.md": "2024-01-02"}) == ("2024-01-02", "git")
    assert doc_date(rel="a.md", text="Date: 2025-10-30", mtime_ns=mtime, git={}) == ("2025-10-30", "doc")
    assert doc_date(rel="a.md", text="x", mtime_ns=mtime, git={}) == ("2023-11-14", "mtime")
    assert git_dates(tmp_path) == {}  # not a checkout


def test_git_dates_in_a_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo, "docs/a.md", "# A\n")
    env = {
        "GIT_AUTHOR_DATE": "2024-03-04T10:00:00Z",
        "GIT_COMMITTER_DATE": "2024-03-04T10:00:00Z",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "HOME": str(tmp_path),
    }
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "a"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    assert git_dates(repo / "docs") == {"a.md": "2024-03-04"}


# -- text and chunking ------------------------------------------------------------------------
def test_headings_keep_identifiers_whole() -> None:
    doc = parse("# Sagas\n\n## Saga #2: DEVICE_CREATION (设备创建)\n\n" + "body text " * 40, fallback_title="x")
    assert doc.chunks[-1].heading[-1] == "Saga #2: DEVICE_CREATION (设备创建)"
    assert parse("# _Emphasis_ and `code_name`\n\ntext", fallback_title="x").title == "Emphasis and code_name"


def test_live_is_not_liveness() -> None:
    assert fold("liveness") != fold("live")
    assert fold("readiness") == "readiness"
    assert fold("caching") == fold("cached")  # stemming still works elsewhere


# -- ranking and assembly on a small team corpus -----------------------------------------------
CHAT_README = """# LiveChat Service (在线客服系统)

在线客服系统，WebSocket 实时聊天，智能排队分配。

## 架构

会话、消息、坐席。消息通过 RabbitMQ 广播。
"""

OVERVIEW = """# Platform overview

## Services

1. **billing-service** (Port 30005) - metering, balance, invoices, payment saga.
2. **livechat-service** (Port 30010) - customer chat.
3. **notification-service** (Port 30006) - email and websocket notifications.

## Event-driven architecture

All services publish to the `cloudphone.events` exchange.
"""


@pytest.fixture
def team(tmp_path: Path) -> Path:
    root = tmp_path / "team"
    write(root, "README.md", OVERVIEW)
    write(root, "backend/livechat-service/README.md", CHAT_README)
    write(root, "docs/LIVENESS_PROBES.md", "# Liveness probes\n\nLiveness and readiness checks for every pod.\n")
    write(root, "docs/archive/BILLING_OLD.md", "# Billing (old)\n\nBilling logic used to sit in device-service.\n")
    write(root, "docs/BILLING_GUIDE.md", "# Billing guide\n\nBilling logic: metering and balance in billing-service.\n")
    long_sections = "\n\n".join(
        f"## Part {i}: consul health check\n\n" + f"Consul agent step {i}. " * 30 for i in range(1, 9)
    )
    write(root, "docs/CONSUL_ANALYSIS.md", "# Consul 服务注册问题分析\n\n" + long_sections)
    write(root, "docs/ONE_LUCKY.md", "# Misc\n\n## Notes\n\nOnce, consul.\n\n## Other\n\n" + "Unrelated text. " * 40)
    write(
        root,
        "docs/TRACING.md",
        "# 分布式追踪\n\n## 请求链路\n\n"
        + "用 Jaeger 采集每一跳的耗时。" * 20
        + "\n\n## 延迟排查\n\n"
        + "先看各段 span 的耗时。" * 20,
    )
    write(root, "docs/WEEKLY.md", "# 周报\n\n## 下周\n\n请求链路追踪和延迟排查下周做，请求链路追踪先行。\n")
    return root


@pytest.fixture
def searcher(tmp_path: Path, team: Path) -> Searcher:
    settings = Settings(db_path=tmp_path / "g.db", docs=[team])
    index_sources(settings)
    s = Searcher(settings.db_path, passage_tokens=2000)
    yield s
    s.close()


def paths(hits: list) -> list[str]:
    return [h.path for h in hits if h.source == "team"]


def test_a_question_naming_a_service_brings_its_readme(searcher: Searcher) -> None:
    hits = searcher.context("I need to add a real-time chat service to our platform. How should I design it?")
    assert paths(hits)[0] == "backend/livechat-service/README.md"
    assert "README.md" in paths(hits)  # the overview's livechat-service entry too


def test_live_does_not_reach_the_liveness_page(searcher: Searcher) -> None:
    hits = searcher.context("Where should billing logic live?")
    assert "docs/LIVENESS_PROBES.md" not in paths(hits)
    assert paths(hits)[0] == "docs/BILLING_GUIDE.md"  # current beats archived for the same words
    archived = next(h for h in hits if h.path == "docs/archive/BILLING_OLD.md")
    assert archived.status == "archived" and archived.date


def test_a_document_whose_sections_all_match_beats_one_lucky_chunk(searcher: Searcher) -> None:
    ranked = paths(searcher.search("consul health check", k=5))
    assert ranked.index("docs/CONSUL_ANALYSIS.md") < ranked.index("docs/ONE_LUCKY.md")


def test_a_document_whose_outline_names_the_question_beats_a_passing_mention(searcher: Searcher) -> None:
    # The weekly note's one line holds every word of the question; the tracing doc spreads them over
    # its title and headings: that document is about the question (the outline signal in search.py).
    ranked = paths(searcher.context("请求链路追踪 延迟排查"))
    assert ranked.index("docs/TRACING.md") < ranked.index("docs/WEEKLY.md")


def test_several_sections_of_one_document_with_neighbours_within_budget(searcher: Searcher) -> None:
    hits = searcher.context("consul health check part 4", budget_tokens=1500)
    consul = [h for h in hits if h.path == "docs/CONSUL_ANALYSIS.md"]
    assert consul and "Consul agent step 4." in consul[0].text
    assert sum(estimate_tokens(h.text) for h in hits) <= 1500
    assert len({h.heading for h in consul}) >= 1 and consul[0].heading.startswith("Consul 服务注册问题分析 > Part")


def test_team_docs_come_before_the_pattern_library(searcher: Searcher) -> None:
    hits = searcher.context("consul health check and service discovery")
    sources = [h.source for h in hits]
    assert sources[0] == "team"
    if "knowledge" in sources:
        assert sources.index("knowledge") > max(i for i, s in enumerate(sources) if s == "team")


# -- the assembly rules, on hand-made sections --------------------------------------------------
def sections(n: int, size: int = 300, heading: str = "Doc > S") -> dict[int, Section]:
    return {i: Section(i, f"{heading}{i // 2}", f"chunk {i} " + "x" * size) for i in range(n)}


def test_assembly_adds_the_rest_of_a_cut_section_and_merges_neighbours() -> None:
    chunks = sections(6)
    doc = Doc(1, 2.0, [Section(2, chunks[2].heading, chunks[2].text, 1.0)], folder="d")
    passages = assemble([doc], lambda d: chunks, budget_tokens=4000)
    assert len(passages) == 1
    assert [s.ordinal for s in passages[0].sections] == [2, 3]  # 3 continues section 1 (same heading)


def test_assembly_respects_the_budget_and_the_per_document_share() -> None:
    big = {i: Section(i, "Doc > S", "word " * 400) for i in range(20)}
    docs = [
        Doc(k, 3.0 - k / 10, [Section(i, "Doc > S", big[i].text, 1.0 - i / 100) for i in range(5)], folder=str(k))
        for k in range(1, 6)
    ]
    passages = assemble(docs, lambda d: big, budget_tokens=3000)
    total = sum(estimate_tokens(p.text) for p in passages)
    assert total <= 3000
    per_doc: dict[int, int] = {}
    for p in passages:
        per_doc[p.doc.key] = per_doc.get(p.doc.key, 0) + estimate_tokens(p.text)
    assert max(per_doc.values()) <= 3000 * 0.25 + 20
    assert len(per_doc) >= 4  # breadth first: most documents get their best section


def test_assembly_never_leaves_a_code_block_open() -> None:
    chunks = {
        0: Section(0, "Doc > Code", "```ts\n" + "const a = 1;\n" * 30),
        1: Section(1, "Doc > Code", "```ts\n" + "const b = 2;\n" * 30 + "```"),
    }
    doc = Doc(1, 1.0, [Section(0, "Doc > Code", chunks[0].text, 1.0)], folder="d")
    (passage,) = assemble([doc], lambda d: chunks, budget_tokens=4000)
    assert passage.text.startswith("```ts")
    assert passage.text.count("```ts") == 1  # the repeated opening fence is dropped when merged
    assert open_fence(passage.text) is None
