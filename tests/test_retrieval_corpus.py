"""The engine on the real next-cloudphone docs (skipped when the corpus is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings
from bot.retrieval import Searcher, index_sources

CORPUS = Path(__file__).resolve().parents[1].parent / "shared/corpora/next-cloudphone"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpora/next-cloudphone is absent"),
]


def test_corpus_index_and_bilingual_search(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "corpus.db", docs=[CORPUS])
    report = index_sources(settings)
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
