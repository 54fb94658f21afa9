"""Retrieval: chunk and index the team's docs and the bundled knowledge/, search them bilingually.

Public interface:
- `index_sources(settings, paths)` → `IndexReport`;
- `build_searcher(settings)` → `Searcher`, with the model query rewrite wired in when a model
  key is set (the way the bot and `archbot ask` should build one);
- `Searcher(db_path).search(query, k)` → `list[Hit]`, `.info()`, `.doc_titles(limit)` → `list[DocTitle]`
  (`(title, path)` tuples whose `str()` is the title).
"""

from __future__ import annotations

from bot.config import Settings
from bot.retrieval.index import IndexReport, index_sources
from bot.retrieval.rewrite import ModelRewriter, Rewriter, build_rewriter
from bot.retrieval.search import DocTitle, Searcher


def build_searcher(settings: Settings) -> Searcher:
    """A `Searcher` over settings.db_path; with ANTHROPIC_API_KEY set it also ranks a model rewrite
    of each question into both languages (cached; any failure falls back to plain search)."""
    rewriter = build_rewriter(settings) if settings.has_model and settings.query_rewrite else None
    return Searcher(settings.db_path, docs_url=settings.docs_url, rewriter=rewriter)


__all__ = [
    "DocTitle",
    "IndexReport",
    "ModelRewriter",
    "Rewriter",
    "Searcher",
    "build_rewriter",
    "build_searcher",
    "index_sources",
]
