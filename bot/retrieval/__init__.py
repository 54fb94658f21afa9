"""Retrieval: chunk and index the team's docs and the bundled knowledge/, search them bilingually.

Public interface:
- `index_sources(settings, paths)` → `IndexReport`;
- `build_searcher(settings)` → `Searcher`, with the model query rewrite wired in when a model
  key is set (the way the bot and `archbot ask` should build one);
- `Searcher(db_path).search(query, k)` → `list[Hit]` (ranked chunks, one per place: `archbot search`),
  `.context(query)` → `list[Hit]` (the passages to send the model, within ARCHBOT_PASSAGE_TOKENS),
  `.info()`, `.doc_titles(limit)` → `list[DocTitle]` (`(title, path)` tuples whose `str()` is the title).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from bot.config import Settings

if TYPE_CHECKING:
    from bot.retrieval.dense import DenseRanker
    from bot.retrieval.index import IndexReport, index_sources
    from bot.retrieval.rewrite import ModelRewriter, Rewriter, build_rewriter
    from bot.retrieval.search import DocTitle, Searcher

# Imported on first use (PEP 562): `archbot search` needs the searcher, not the indexer (YAML,
# markdown parsing) nor the model rewrite.
_HOMES = {
    "IndexReport": "index",
    "index_sources": "index",
    "ModelRewriter": "rewrite",
    "Rewriter": "rewrite",
    "build_rewriter": "rewrite",
    "DocTitle": "search",
    "Searcher": "search",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bot.retrieval' has no attribute {name!r}")
    value = getattr(import_module(f"bot.retrieval.{home}"), name)
    globals()[name] = value
    return value


def build_searcher(settings: Settings) -> Searcher:
    """A `Searcher` over settings.db_path; with ANTHROPIC_API_KEY set it also ranks a model rewrite
    of each question into both languages (cached; any failure falls back to plain search), and with
    the `dense` extra installed the outlines' embeddings (see `build_dense`)."""
    from bot.retrieval.search import Searcher

    rewriter = None
    if settings.has_model and settings.query_rewrite:
        from bot.retrieval.rewrite import build_rewriter

        rewriter = build_rewriter(settings)
    return Searcher(
        settings.db_path,
        docs_url=settings.docs_url,
        rewriter=rewriter,
        passage_tokens=settings.passage_tokens,
        rewrite_wait=settings.rewrite_wait,
        dense=build_dense(settings),
    )


def build_dense(settings: Settings) -> DenseRanker | None:
    """The dense side of ranking (dense.py) when ARCHBOT_DENSE is on and the `dense` extra is
    installed, warming up (model and vectors) in the background; else None."""
    if not settings.dense:
        return None
    from bot.retrieval.dense import DenseRanker, available

    if not available():
        return None
    ranker = DenseRanker(settings.db_path)
    ranker.warm()
    return ranker


__all__ = [
    "DocTitle",
    "IndexReport",
    "ModelRewriter",
    "Rewriter",
    "Searcher",
    "build_dense",
    "build_rewriter",
    "build_searcher",
    "index_sources",
]
