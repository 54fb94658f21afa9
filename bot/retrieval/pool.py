"""Search in worker processes, so a burst of questions does not queue on one process's GIL.

Ranking is pure Python (about 15 ms a query on the team corpus); `asyncio.to_thread` keeps it off
the event loop but not off the GIL, so 40 questions at once cost the bot's process ~0.6 s of
interpreter time in which acks, streams and store calls wait their turn. `PooledSearcher` runs
`Searcher.search` and `Searcher.context` in a small process pool (each worker opens the same index file read-only, as
the threads did), and everything else (`info`, `doc_titles`) in this process. With a model key,
the question's rewrite is awaited here (the rewriter holds an HTTP client, the model limit, the
cache and the wait policy) and handed to the worker with the question: a bot with a key (every
real one) ranks in the pool too. Measured before this (`bench/vs_template.py`, 40 at once, the
rewrite ranked in this process): the answers' model requests went out ~0.7 s after the stream
opened, the process's interpreter busy ranking.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bot.retrieval.search import Searcher
from bot.types import Hit

log = logging.getLogger(__name__)

_worker: Searcher | None = None


def _start_worker(db_path: str, docs_url: str | None, passage_tokens: int = 8000, dense: bool = False) -> None:
    global _worker
    ranker = None
    if dense:
        from bot.retrieval.dense import DenseRanker

        ranker = DenseRanker(Path(db_path))
        ranker.warm()
    _worker = Searcher(Path(db_path), docs_url=docs_url, passage_tokens=passage_tokens, dense=ranker)


def _search_in_worker(query: str, k: int, rewrite: str | None = None) -> list[Hit]:
    assert _worker is not None
    return _worker.search(query, k, rewrite=rewrite)


def _context_in_worker(query: str, budget_tokens: int | None, rewrite: str | None = None) -> list[Hit]:
    assert _worker is not None
    return _worker.context(query, budget_tokens, rewrite=rewrite)


class PooledSearcher:
    """A `Searcher` whose `search` runs in `workers` processes. Blocking, like `Searcher.search`."""

    def __init__(self, searcher: Searcher, *, workers: int = 2, timeout: float = 30.0) -> None:
        self.local = searcher
        self.timeout = timeout
        # spawn: the bot's process has threads (store, heartbeat), which fork would copy half-way.
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(str(searcher.db_path), searcher.docs_url, searcher.passage_tokens, searcher.dense is not None),
        )
        for _ in range(workers):  # start the workers now, not on the first question
            self._pool.submit(_search_in_worker, "", 1)

    def search(self, query: str, k: int = 8) -> list[Hit]:
        rewrite = self.local.awaited_rewrite(query)
        try:
            return self._pool.submit(_search_in_worker, query, k, rewrite).result(timeout=self.timeout)
        except Exception:  # a broken pool must not cost the answer its passages
            log.warning("search worker failed; searching in this process", exc_info=True)
            return self.local.search(query, k, rewrite=rewrite)

    def context(self, query: str, budget_tokens: int | None = None) -> list[Hit]:
        """The passages for the model (see `Searcher.context`), assembled in a worker process."""
        rewrite = self.local.awaited_rewrite(query)
        try:
            return self._pool.submit(_context_in_worker, query, budget_tokens, rewrite).result(timeout=self.timeout)
        except Exception:  # a broken pool must not cost the answer its passages
            log.warning("search worker failed; assembling in this process", exc_info=True)
            return self.local.context(query, budget_tokens, rewrite=rewrite)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.local.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)
