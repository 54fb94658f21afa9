"""The engine on the real next-cloudphone docs (skipped when the corpus is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings
from bot.retrieval import IndexReport, Searcher, index_sources

CORPUS = Path(__file__).resolve().parents[1].parent / "shared/corpora/next-cloudphone"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpora/next-cloudphone is absent"),
]


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, IndexReport]:
    """The corpus indexed once for this module (about 6 s), and the first indexing's report."""
    settings = Settings(db_path=tmp_path_factory.mktemp("corpus") / "corpus.db", docs=[CORPUS])
    return settings, index_sources(settings)


def test_corpus_index_and_bilingual_search(corpus_index: tuple[Settings, IndexReport]) -> None:
    settings, report = corpus_index
    assert report.indexed >= 500 and report.total_chunks > 5000
    assert index_sources(settings).indexed == 0  # nothing changed: nothing re-chunked

    searcher = Searcher(settings.db_path)
    try:
        cases = {
            "who consumes device.connection_lost?": "device.connection",
            "代理池多久自动刷新一次？": "10",
            "why did we go with TypeORM migrations instead of Atlas?": "Atlas",
        }
        for query, expected in cases.items():
            hits = [h for h in searcher.search(query, k=5) if h.source == CORPUS.name]
            assert len({h.path for h in hits}) == len(hits)  # distinct places
            assert any(expected.lower() in h.text.lower() for h in hits), query
    finally:
        searcher.close()


def test_issue_examples_bring_their_key_file_into_the_request(corpus_index: tuple[Settings, IndexReport]) -> None:
    """The four design questions of issue #10, through the passages `archbot ask` sends."""
    from bot.architect.prompt import build_search_results

    settings, _ = corpus_index
    searcher = Searcher(settings.db_path, passage_tokens=settings.passage_tokens)
    try:

        def sent(question: str) -> dict[str, str]:
            blocks, hits = build_search_results(searcher.context(question), budget_tokens=settings.passage_tokens)
            assert blocks
            return {
                h.path: "\n".join(c["text"] for b in blocks if b["source"] == h.path for c in b["content"])
                for h in hits
            }

        chat = sent("I need to add a real-time chat service to our platform")
        assert "backend/livechat-service/README.md" in chat
        assert "livechat-service" in chat.get("CLAUDE.md", "")  # the overview's own livechat entry, not cut off
        billing = sent("where should billing logic live?")
        assert not any("LIVENESS" in p.upper() or "health" in p.lower() for p in billing)
        assert {"CLAUDE.md", "docs/TRANSACTION_SAGA_ANALYSIS.md", "docs/SERVICE_INTEGRATION_ANALYSIS.md"} & set(billing)
        consul = sent("how do services find each other, and what if Consul is down?")
        assert "docs/CONSUL_REGISTRATION_ISSUE_ANALYSIS.md" in consul
        notification = sent("our notification service misses some device events")
        assert "backend/notification-service/README.md" in notification
    finally:
        searcher.close()
