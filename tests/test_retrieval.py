"""Retrieval engine: indexing (incremental, odd files, concurrent readers) and bilingual search."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from bot.config import Settings
from bot.retrieval import IndexReport, Searcher, index_sources
from bot.retrieval.search import analyse

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "docs"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "team-docs"
    shutil.copytree(FIXTURES, folder)
    return folder


@pytest.fixture
def settings(tmp_path: Path, docs: Path) -> Settings:
    return Settings(db_path=tmp_path / "archbot.db", docs=[docs])


def team_hits(settings: Settings, query: str, k: int = 5) -> list:
    searcher = Searcher(settings.db_path)
    try:
        return [h for h in searcher.search(query, k=k + 20) if h.source == "team-docs"][:k]
    finally:
        searcher.close()


def test_index_and_search_english_and_chinese(settings: Settings) -> None:
    report = index_sources(settings)
    assert isinstance(report, IndexReport)
    assert report.indexed >= 5 and report.skipped == {}
    assert report.chunks > 0 and report.total_chunks >= report.chunks

    hits = team_hits(settings, "where do failed messages go? dead letter exchange")
    assert hits[0].path == "en/messaging.md"
    assert hits[0].heading.startswith("Messaging guide > ")  # small sections merge into the next one
    assert hits[0].source == "team-docs" and hits[0].url is None
    assert "orders.dlx" in hits[0].text and len(hits[0].snippet) <= 240

    hits = team_hits(settings, "缓存过期时间是多少")
    assert hits[0].path == "zh/cache.md"


def test_identifiers_match_whole_and_in_parts(settings: Settings) -> None:
    index_sources(settings)
    assert team_hits(settings, "device.connection.lost")[0].path == "en/messaging.md"
    assert team_hits(settings, "DB_PASSWORD")[0].path == "en/messaging.md"
    assert team_hits(settings, "what's the db password variable")[0].path == "en/messaging.md"
    hit = team_hits(settings, "DB_PASSWORD")[0]
    assert "DB_PASSWORD" in hit.snippet  # identifiers survive snippet cleaning


def test_cross_language_both_ways(settings: Settings) -> None:
    index_sources(settings)
    # English question, Chinese passage (glossary: circuit breaker ↔ 熔断, payment ↔ 支付)
    hits = team_hits(settings, "how long does the circuit breaker stay open for payments?")
    assert hits[0].path == "zh/billing.md"
    assert "熔断" in hits[0].heading
    # Chinese question, English passage (glossary: 灰度 ↔ canary, 回滚 ↔ rollback)
    assert team_hits(settings, "灰度发布放多少流量")[0].path == "en/release.md"
    assert team_hits(settings, "怎么回滚")[0].path == "en/release.md"


def test_front_matter_title_and_tags(settings: Settings) -> None:
    index_sources(settings)
    hit = team_hits(settings, "canary")[0]
    assert hit.path == "en/release.md"
    assert hit.title == "Release checklist"
    assert "title:" not in hit.text


def test_urls_for_docs_but_not_for_knowledge(settings: Settings) -> None:
    index_sources(settings)
    searcher = Searcher(settings.db_path, docs_url="https://git.example/blob/main/")
    hits = searcher.search("dead letter exchange", k=20)
    searcher.close()
    team = [h for h in hits if h.source == "team-docs"]
    assert team[0].url == "https://git.example/blob/main/" + team[0].path
    assert all(h.url is None for h in hits if h.source == "knowledge")


def test_incremental_add_change_delete(settings: Settings, docs: Path) -> None:
    first = index_sources(settings)
    again = index_sources(settings)
    assert again.indexed == 0 and again.removed == 0 and again.chunks == 0
    assert again.unchanged == first.indexed + first.unchanged

    (docs / "en" / "new.md").write_text("# Flux capacitor\n\nThe flux capacitor needs 1.21 gigawatts.\n")
    cache = docs / "zh" / "cache.md"
    cache.write_text(cache.read_text(encoding="utf-8").replace("300 秒", "900 秒") + "\n", encoding="utf-8")
    (docs / "en" / "onboarding.md").unlink()
    touched = docs / "en" / "release.md"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 5_000_000_000))

    report = index_sources(settings)
    assert report.indexed == 2  # new.md and the changed cache.md; release.md only re-stamped
    assert report.removed == 1
    assert team_hits(settings, "flux capacitor")[0].path == "en/new.md"
    assert "900 秒" in team_hits(settings, "用户信息缓存过期时间")[0].text
    assert not [h for h in team_hits(settings, "pnpm install docker compose") if h.path == "en/onboarding.md"]
    assert index_sources(settings).unchanged == report.indexed + report.unchanged


def test_odd_files_are_skipped_and_counted(settings: Settings, docs: Path) -> None:
    odd = docs / "odd"
    odd.mkdir()
    (odd / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (odd / "latin1.md").write_bytes("# Caf\xe9\n\nna\xefve text\n".encode("latin-1"))
    (odd / "huge.md").write_text("# Huge\n\n" + "word " * 450_000)
    (odd / "empty.md").write_text("")
    (odd / "blank.md").write_text("   \n\n")
    (odd / "dangling.md").symlink_to(odd / "does-not-exist.md")
    (odd / "loop-a.md").symlink_to(odd / "loop-b.md")
    (odd / "loop-b.md").symlink_to(odd / "loop-a.md")
    (odd / "parent").symlink_to(docs, target_is_directory=True)  # a directory loop
    (odd / "picture.png").write_bytes(b"\x89PNG")  # not a doc: ignored, not counted
    if os.geteuid() != 0:  # root reads anything
        locked = odd / "locked.md"
        locked.write_text("# Secret\n")
        locked.chmod(0)

    report = index_sources(settings)
    expected = {"binary": 1, "invalid_utf8": 1, "too_large": 1, "empty": 2, "symlink_loop": 3, "unreadable": 1}
    if os.geteuid() != 0:
        expected["unreadable"] += 1
    assert report.skipped == expected
    assert report.indexed >= 5
    assert team_hits(settings, "dead letter")[0].path == "en/messaging.md"


def test_near_duplicates_collapse(settings: Settings, docs: Path) -> None:
    text = (docs / "en" / "messaging.md").read_text(encoding="utf-8")
    (docs / "en" / "messaging-copy.md").write_text(text.replace("three times", "3 times"), encoding="utf-8")
    index_sources(settings)
    hits = team_hits(settings, "dead letter exchange DlxConsumer", k=5)
    paths = [h.path for h in hits]
    assert len(paths) == len(set(paths))
    assert sum(p.startswith("en/messaging") for p in paths) == 1


def test_missing_or_empty_index_returns_nothing(tmp_path: Path) -> None:
    assert Searcher(tmp_path / "nope.db").search("anything") == []
    assert not (tmp_path / "nope.db").exists()
    sqlite3.connect(tmp_path / "blank.db").close()
    assert Searcher(tmp_path / "blank.db").search("anything") == []
    assert Searcher(tmp_path / "blank.db").search("   ") == []


def test_not_a_folder_is_an_error(tmp_path: Path) -> None:
    from bot.errors import IndexError_

    settings = Settings(db_path=tmp_path / "x.db")
    with pytest.raises(IndexError_):
        index_sources(settings, [tmp_path / "missing"])


def test_searches_from_threads_during_reindex(settings: Settings, docs: Path) -> None:
    index_sources(settings)
    searcher = Searcher(settings.db_path)
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                hits = [h for h in searcher.search("dead letter exchange", k=5) if h.source == "team-docs"]
                counts.append(len(hits))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(4):  # rewrite every doc, so each run swaps all chunks
            for path in docs.rglob("*.md"):
                path.write_text(path.read_text(encoding="utf-8") + f"\n<!-- edit {n} -->\n", encoding="utf-8")
            assert index_sources(settings).indexed == 5
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors
    assert counts and min(counts) >= 1  # never an empty (half-built) view


def test_doc_titles_for_suggested_prompts(settings: Settings, docs: Path) -> None:
    (docs / "en" / "notes.md").write_text("no heading, so the title is only the file name\n")
    (docs / "zh" / "cache-copy.md").write_text((docs / "zh" / "cache.md").read_text(encoding="utf-8") + "\n更多。\n")
    (docs / "en" / "fancy.md").write_text("# 🚀 Launch plan ✅\n\nSteps.\n")
    index_sources(settings)
    searcher = Searcher(settings.db_path)
    try:
        titles = searcher.doc_titles()
        assert sorted(t for t, _ in titles) == sorted(
            ["Messaging guide", "Onboarding", "Release checklist", "计费服务设计", "缓存策略", "Launch plan"]
        )
        assert ("Release checklist", "en/release.md") in titles
        assert all(str(t) == t.title for t in titles)  # plain (title, path) tuples that print as the title
        assert all(not p.endswith("notes.md") for _, p in titles)  # a file-name title says nothing
        assert len(searcher.doc_titles(2)) == 2
        assert searcher.doc_titles(0) == []
        everything = searcher.doc_titles(100, exclude_sources=())
        assert ("Circuit breaker", "circuit-breaker.md") in everything
    finally:
        searcher.close()
    assert Searcher(settings.db_path.parent / "none.db").doc_titles() == []


def test_knowledge_aliases_and_generic_questions(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "knowledge.db")  # knowledge/ alone
    index_sources(settings)
    searcher = Searcher(settings.db_path)
    try:
        # An alias from the front matter (no body text needed): 舱壁隔离 names the bulkhead page.
        assert searcher.search("舱壁隔离", k=3)[0].path == "bulkhead.md"
        # A problem described without the pattern's name, in either language.
        for question in (
            "How do we keep a slow downstream service from taking ours down?",
            "下游服务响应很慢，怎么避免把我们的服务也拖垮？",
        ):
            top = [h.path for h in searcher.search(question, k=5)]
            assert "circuit-breaker.md" in top and "timeouts-deadlines.md" in top
        # "Related" link lists are not passages.
        assert all(not h.heading.endswith("> Related") for h in searcher.search("quotas tenant limits", k=20))
    finally:
        searcher.close()


def test_files_from_an_older_analyser_are_reindexed(settings: Settings) -> None:
    first = index_sources(settings)
    conn = sqlite3.connect(settings.db_path)
    with conn:  # as an index written before ANALYSIS_VERSION was stamped on each file looks
        conn.execute("UPDATE ix_files SET hash = substr(hash, instr(hash, ':') + 1) WHERE source = 'team-docs'")
    conn.close()
    again = index_sources(settings)
    assert again.indexed == 5 and again.removed == 0
    assert again.unchanged == first.indexed - 5
    assert index_sources(settings).indexed == 0


def test_a_name_the_segmenter_does_not_know_stays_one_word() -> None:
    # rjieba cuts 飞书 (not in its dictionary) into 飞 + 书; alone, single characters carry no topic
    # and were dropped, so the question lost its subject. Joined, it is one concept, translated.
    concepts = {c.label: c for c in analyse("要加一个飞书渠道应该怎么做？")}
    assert "飞书" in concepts
    assert ("lark",) in concepts["飞书"].alternatives
    assert "渠道" in concepts
    # a stopword between characters still splits them (的 is not part of a name)
    assert all(c.label not in ("飞书的", "的") for c in analyse("飞书的通知"))
