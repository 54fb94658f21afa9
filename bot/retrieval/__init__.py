"""Retrieval: chunk and index the team's docs and the bundled knowledge/, search them bilingually.

Public interface: `index_sources(settings, paths)` → `IndexReport`, and
`Searcher(db_path).search(query, k)` → `list[Hit]`.
"""

from bot.retrieval.index import IndexReport, index_sources
from bot.retrieval.search import Searcher

__all__ = ["IndexReport", "Searcher", "index_sources"]
