"""Search in worker processes gives the same passages as search in the bot's own process."""

from __future__ import annotations

import shutil
from pathlib import Path

from bot.config import Settings
from bot.retrieval import Searcher, index_sources
from bot.retrieval.pool import PooledSearcher

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "docs"


def test_pooled_search_matches_in_process_search(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(FIXTURES, docs)
    settings = Settings(db_path=tmp_path / "archbot.db", docs=[docs])
    index_sources(settings)
    local = Searcher(settings.db_path)
    pooled = PooledSearcher(Searcher(settings.db_path), workers=1)
    try:
        for query in ("how do device events reach notifications", "设备 事件", "retry budget"):
            expected = [(h.path, h.heading, round(h.score, 6)) for h in local.search(query, 5)]
            got = [(h.path, h.heading, round(h.score, 6)) for h in pooled.search(query, 5)]
            assert got == expected and got, query
        assert pooled.info() == local.info()  # everything but search stays in this process
    finally:
        pooled.close()
        local.close()
