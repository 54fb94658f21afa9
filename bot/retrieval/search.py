"""Search: a question → ranked, distinct passages (`Hit`s).

How a question is ranked:
1. It is analysed into *concepts* (`analyse`): each topical word or identifier of the
   question, with its alternatives: the bilingual glossary's renderings in the other
   language, an identifier's parts, a Chinese compound's sub-words. Stopwords drop out.
2. FTS5 fetches candidates for all alternative terms OR-ed, ranked by BM25 with column
   weights (title, heading path, file path, body).
3. Candidates are re-scored by *coverage*: the IDF-weighted share of the question's
   concepts a passage contains in any language, plus the normalised BM25. Coverage is what
   makes a Chinese passage that contains every concept beat an English one that repeats one
   word, and it is what lets glossary translations count without drowning the original words.
4. Near-duplicates (the corpus repeats itself across files) collapse, and the first results
   come from distinct files, so the top 5 are 5 different places.

For the model's context (`context`), documents are ranked too: their best chunks (decaying), a
status prior (current over archived), a recognised service's own docs, and how much of the
question their outline (title, headings, path) names; assemble.py turns them into passages.

With a rewriter (a model key is set; see rewrite.py), the question's rewrite into both
languages is appended to it before step 1; without one, or when it fails, the question alone.

`Searcher` is safe to share between threads: each thread gets its own read connection,
and every query is one autocommit read, so an index swap in another process is seen whole
or not at all (WAL).
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bot.retrieval import assemble as assembly
from bot.retrieval.entities import Entity, discover, recognise
from bot.retrieval.rewrite import Rewriter
from bot.retrieval.rewrite_wait import Rewrites
from bot.retrieval.text import (
    _CJK_CHAR,
    _TOKEN_OR_CJK,
    MAX_WORD,
    _jieba,
    fold,
    glossary,
    join_single_characters,
    split_identifier,
    stopwords,
)
from bot.retrieval.text import terms as text_terms
from bot.types import Hit

if TYPE_CHECKING:
    from bot.retrieval.dense import DenseRanker

CANDIDATES = 300  # FTS rows re-scored per query
WIDE_CANDIDATES = 4000  # matching chunks ranked by BM25 (ids only) to find the chosen documents' best
DOC_CANDIDATES = 30  # documents ranked whole (title, headings, path)
MAX_HUBS = 12  # top-level docs always considered
PER_DOC_CANDIDATES = 4  # chunks each of them brings when no chunk of it was a candidate
MAX_TERMS = 64  # FTS terms per query
WEIGHTS = (4.0, 3.0, 3.0, 1.0)  # bm25 column weights: title, heading, path, body
COVERAGE_WEIGHT = 1.0
BM25_WEIGHT = 0.5
DUPLICATE_JACCARD = 0.8
SNIPPET_CHARS = 240
MAX_ASSEMBLY_DOCS = 40  # ranked documents handed to assembly
DUPLICATE_WINDOW = 60  # passages compared for near-duplicates when assembling (the best ones)
PASSAGE_TOKENS = 8000  # default context budget (ARCHBOT_PASSAGE_TOKENS)
REWRITE_MIN_SHARE = 0.2  # of the question's concepts a rewrite must restate to be used (see `on_topic`)
REWRITE_WAIT = 1.2  # seconds a search waits for the model rewrite beside it (ARCHBOT_REWRITE_WAIT)
# Document-level score: a file whose several sections match beats one lucky chunk.
SECOND_SECTION = 0.35
THIRD_SECTION = 0.15
# Prior by status: a design answer leans on current docs; archived ones only when nothing else says it.
STATUS_PRIOR = {"current": 1.0, "proposal": 0.92, "report": 0.85, "archived": 0.6}
ENTITY_BOOST = 0.5  # a recognised service's own docs
HUB_PRIOR = 1.15
DOC_BLEND = 0.0  # how much a chunk's document score adds to its own in `search` (ranked chunks)

# A document whose title, headings and path name the question's concepts is about it (beside its best
# chunks' scores): its score grows by up to OUTLINE_WEIGHT (all concepts named). Tune half of
# bench/design_questions.yaml, must-cite without / with rewrite: 0.776 / 0.881 at 0, 0.806 / 0.896 at
# 0.8 (0.6-1.2 all about as good).
OUTLINE_WEIGHT = 0.8
OUTLINE_TOP = 60  # best documents re-weighed by their outline

_Scored = tuple[float, int, set[str]]  # (score, chunk rowid, body terms)


@dataclass
class _File:
    id: int
    source: str
    path: str
    title: str
    status: str
    date: str | None
    date_source: str | None


@dataclass
class _Ranked:
    """One query's ranking: chunks, the files they belong to and each file's document score."""

    chunks: list[_Scored]
    concepts: list[Concept]
    chunk_file: dict[int, int]  # chunk rowid -> file id
    files: dict[int, _File]
    doc_scores: dict[int, float]
    entities: list[Entity]


log = logging.getLogger(__name__)
_DECORATION = frozenset({"So", "Sk", "Cs", "Mn", "Cf"})  # emoji, modifiers, variation selectors, joiners


class DocTitle(NamedTuple):
    """A document to suggest: a plain `(title, path)` tuple whose `str()` is the title."""

    title: str
    path: str

    def __str__(self) -> str:
        return self.title


@dataclass
class Concept:
    """One thing the question asks about, with every way a passage may say it."""

    label: str
    alternatives: list[tuple[str, ...]] = field(default_factory=list)  # each: terms that must all appear
    weight: float = 1.0

    def add(self, alt: tuple[str, ...]) -> None:
        alt = tuple(t for t in alt if t)
        if alt and alt not in self.alternatives:
            self.alternatives.append(alt)

    def terms(self) -> list[str]:
        return [t for alt in self.alternatives for t in alt]

    def matched(self, present: set[str]) -> bool:
        return any(all(t in present for t in alt) for alt in self.alternatives)


@dataclass
class _Unit:
    """A word of the question as it was written."""

    key: str  # folded form used for glossary lookup
    alts: list[tuple[str, ...]]  # how the index may hold it
    ident: bool = False


def _units(query: str) -> list[_Unit]:
    units: list[_Unit] = []
    for match in _TOKEN_OR_CJK.finditer(query):
        run = match.group()
        if _CJK_CHAR.match(run):
            for word in join_single_characters(_jieba().cut(run)):
                if not word.strip():
                    continue
                alts: list[tuple[str, ...]] = [(word,)]
                if len(word) >= 3:
                    subs = tuple(w for w in _jieba().cut_for_search(word) if w != word and len(w) >= 2)
                    if len(subs) >= 2:
                        alts.append(subs)
                units.append(_Unit(word, alts))
            continue
        if len(run) > MAX_WORD:
            continue
        pieces, parts = split_identifier(run)
        if len(parts) > 1:
            whole = "_".join(p.lower() for p in pieces)
            alts = [(whole,), tuple(fold(p) for p in parts)]
            if len(pieces) == 1:  # CamelCase word: also its lower-case form is the whole
                alts[0] = (pieces[0].lower(),)
            units.append(_Unit(whole, alts, ident=True))
        else:
            word = fold(run)
            units.append(_Unit(word, [(word,)]))
    return units


def analyse(query: str) -> list[Concept]:
    """Split a question into concepts with their cross-language alternatives."""
    units = _units(query)
    stop = stopwords()
    gloss = glossary()
    concepts: list[Concept] = []
    i = 0
    while i < len(units):
        matched = False
        for n in range(min(gloss.longest, len(units) - i), 0, -1):
            key = tuple(u.key for u in units[i : i + n])
            if n == 1 and units[i].ident and key not in gloss.entries:
                # an identifier: its whole form, else its parts as a phrase ("real-time" → real time)
                key = next((tuple(a) for a in units[i].alts if tuple(a) in gloss.entries), tuple(units[i].alts[0]))
            translations = gloss.entries.get(key)
            if not translations:
                continue
            if n == 1 and key[0] in stop:
                break
            concept = Concept(" ".join(key))
            concept.add(key)
            if n == 1:
                for alt in units[i].alts:
                    concept.add(alt)
            for translation in translations:
                concept.add(translation)
            concepts.append(concept)
            i += n
            matched = True
            break
        if matched:
            continue
        unit = units[i]
        i += 1
        if unit.key in stop or (len(unit.key) == 1 and not unit.key.isdigit()):
            continue
        concept = Concept(unit.key)
        for alt in unit.alts:
            concept.add(alt)
        concepts.append(concept)
    # one concept per label
    merged: dict[str, Concept] = {}
    for concept in concepts:
        if concept.label in merged:
            for alt in concept.alternatives:
                merged[concept.label].add(alt)
        else:
            merged[concept.label] = concept
    return list(merged.values())


def on_topic(concepts: list[Concept], rewrite: str) -> bool:
    """Whether a model rewrite is about the question: it must carry at least `REWRITE_MIN_SHARE` of
    the question's concepts (IDF-weighted, in either language: the glossary's renderings count).

    A real rewrite restates the topic (bench/design_rewrites.yaml, tune half: 0.39–1.0; a colloquial
    question's paraphrase, 0.35); a reply about something else carries next to none. Searching with
    an unrelated text sent the model far worse passages (a canned answer as the rewrite: tune
    must-cite 0.78 → 0.54). rewrite.py already drops replies that are not keyword lines in both
    languages; this catches the rest."""
    if not concepts:
        return True
    present = set(text_terms(rewrite))
    for concept in analyse(rewrite):
        present.update(concept.terms())
    total = sum(c.weight for c in concepts) or 1.0
    return sum(c.weight for c in concepts if c.matched(present)) / total >= REWRITE_MIN_SHARE


def _document_frequencies(conn: sqlite3.Connection, terms: list[str]) -> dict[str, int]:
    """How many chunks hold each term (terms absent from the index are left out)."""
    if not terms:
        return {}
    marks = ",".join("?" * len(terms))
    return dict(conn.execute(f"SELECT term, doc FROM ix_vocab WHERE term IN ({marks})", terms).fetchall())


def _weighted(concepts: list[Concept], df: dict[str, int], total: int) -> list[Concept]:
    """The concepts some alternative of which is in the index, each weighted by its best alternative's IDF."""

    def idf(term: str) -> float:
        n = df.get(term, 0)
        return math.log(1 + (total - n + 0.5) / (n + 0.5))

    live: list[Concept] = []
    for concept in concepts:
        weights = [max(idf(t) for t in alt) for alt in concept.alternatives if all(t in df for t in alt)]
        if weights:
            concept.weight = max(weights)
            live.append(concept)
    return live


def _weigh_outlines(conn: sqlite3.Connection, concepts: list[Concept], doc_scores: dict[int, float]) -> None:
    """Raise the best documents' scores by how much of the question their outline (title, headings,
    path) covers, IDF-weighted: the doc *about* tracing beats a note that mentions it once."""
    top = sorted(doc_scores, key=lambda f: -doc_scores[f])[:OUTLINE_TOP]
    total_weight = sum(c.weight for c in concepts)
    if not top or not total_weight or not OUTLINE_WEIGHT:
        return
    for fid, title, headings, path in conn.execute(
        f"SELECT rowid, title, headings, path FROM ix_docs_fts WHERE rowid IN ({','.join('?' * len(top))})", top
    ):
        present = set(title.split()) | set(headings.split()) | set(path.split())
        covered = sum(c.weight for c in concepts if c.matched(present)) / total_weight
        doc_scores[fid] *= 1 + OUTLINE_WEIGHT * covered


def _fts_query(terms: list[str]) -> str:
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


_NOISE = re.compile(r"\*+|`+|(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])|^#+|[>|]+|!\[[^\]]*\]\([^)]*\)|<[^>]+>|\s+")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def snippet(text: str, concepts: list[Concept], limit: int = SNIPPET_CHARS) -> str:
    """The passage's most on-topic line(s), cleaned of markdown, at most `limit` characters."""
    needles = {t for c in concepts for t in c.terms() if len(t) > 1}
    lines = [line for line in text.split("\n") if line.strip() and not set(line.strip()) <= set("|-: `~")]
    best, best_score = 0, -1
    for n, line in enumerate(lines):
        low = line.lower()
        score = sum(1 for t in needles if t.replace("_", "") in low.replace("_", ""))
        if score > best_score:
            best, best_score = n, score
    picked = " ".join(lines[best : best + 3]) if lines else text
    clean = _NOISE.sub(" ", _LINK.sub(r"\1", picked)).strip()
    return clean if len(clean) <= limit else clean[: limit - 1].rstrip() + "…"


class Searcher:
    """Ranked passages from the index in `db_path`. Thread-safe; never raises for a missing index."""

    def __init__(
        self,
        db_path: Path,
        *,
        docs_url: str | None = None,
        rewriter: Rewriter | None = None,
        passage_tokens: int = PASSAGE_TOKENS,
        rewrite_wait: float = REWRITE_WAIT,
        dense: DenseRanker | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.docs_url = docs_url
        self.rewriter = rewriter
        self.passage_tokens = passage_tokens
        self.rewrite_wait = rewrite_wait
        self.rewrites = Rewrites(rewriter, rewrite_wait) if rewriter is not None else None
        self.dense = dense  # optional: document outlines' embeddings blended into document scores (dense.py)
        self._local = threading.local()
        self._entity_lock = threading.Lock()
        self._entity_cache: tuple[object, list[Entity]] | None = None

    # -- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if not self.db_path.is_file():
            return None
        conn = sqlite3.connect(str(self.db_path), check_same_thread=False, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection and the rewriter's HTTP client (if any)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        close = getattr(self.rewriter, "close", None)
        if callable(close):
            close()

    def info(self) -> dict[str, object]:
        """What is indexed: per source, files, chunks and the newest indexing time (empty when none)."""
        conn = self._conn()
        if conn is None:
            return {"sources": {}, "chunks": 0}
        try:
            rows = conn.execute(
                "SELECT f.source, COUNT(DISTINCT f.id), COUNT(c.id), MAX(f.indexed_at)"
                " FROM ix_files f LEFT JOIN ix_chunks c ON c.file_id = f.id GROUP BY f.source"
            ).fetchall()
        except sqlite3.OperationalError:
            return {"sources": {}, "chunks": 0}
        sources = {r[0]: {"files": r[1], "chunks": r[2], "indexed_at": r[3]} for r in rows}
        return {"sources": sources, "chunks": sum(int(v["chunks"]) for v in sources.values())}

    def doc_titles(self, limit: int = 20, *, exclude_sources: tuple[str, ...] = ("knowledge",)) -> list[DocTitle]:
        """(title, path) of indexed documents worth suggesting, most central first.

        Central means near the top of its folder tree, then longer (more chunks). Documents whose
        title is only their file name are left out, a title appears once, and decoration
        (emoji, symbols) around a title is trimmed.
        """
        if limit <= 0:
            return []
        conn = self._conn()
        if conn is None:
            return []
        marks = ",".join("?" * len(exclude_sources))
        where = f"WHERE source NOT IN ({marks})" if exclude_sources else ""
        try:
            rows = conn.execute(
                f"SELECT title, path, chunks FROM ix_files {where} ORDER BY path", tuple(exclude_sources)
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        candidates = []
        for title, path, chunks in rows:
            title = _clean_title(title or "")
            name = path.rsplit("/", 1)[-1]
            if not title or title in (name, name.rsplit(".", 1)[0]):
                continue
            candidates.append((path.count("/"), -(chunks or 0), path, title))
        candidates.sort()
        out: list[DocTitle] = []
        seen: set[str] = set()
        for _, _, path, title in candidates:
            if title.casefold() in seen:
                continue
            seen.add(title.casefold())
            out.append(DocTitle(title, path))
            if len(out) >= limit:
                break
        return out

    def start_rewrite(self, query: str) -> None:
        """Start the model rewrite of a question about to be searched (no-op without a rewriter), so
        its round trip overlaps the caller's work before the search (see rewrite_wait.py)."""
        if self.rewrites is not None and query.strip():
            self.rewrites.start(query)

    # -- search --------------------------------------------------------------------------
    def search(self, query: str, k: int = 8, *, rewrite: str | None = None) -> list[Hit]:
        """The k best passages for a question, best first, from distinct places (one chunk each);
        `rewrite` as for `context`."""
        if k <= 0 or not query.strip():
            return []
        ranked = self._ranked(query, rewrite=rewrite)
        if ranked is None:
            return []
        conn = self._conn()
        assert conn is not None
        return self._hits(conn, ranked, k)

    def context(self, query: str, budget_tokens: int | None = None, *, rewrite: str | None = None) -> list[Hit]:
        """The passages to send the model for a question: team docs first, several sections of a
        document when they match, with neighbours, filling `budget_tokens` (see assemble.py).

        `rewrite`: the question's model rewrite, already fetched by the caller (`awaited_rewrite`
        in the bot's process, the search then running in a worker process: pool.py)."""
        budget = self.passage_tokens if budget_tokens is None else budget_tokens
        if budget <= 0 or not query.strip():
            return []
        ranked = self._ranked(query, dense=True, rewrite=rewrite)
        if ranked is None:
            return []
        conn = self._conn()
        assert conn is not None
        return self._passages(conn, ranked, budget)

    def awaited_rewrite(self, query: str) -> str | None:
        """The question's model rewrite, waited for as long as it is worth (rewrite_wait.py), or
        None (no rewriter, none in time). For a caller that searches elsewhere (pool.py): the
        rewriter's HTTP client, cache and wait policy live in this process."""
        if self.rewrites is None or not query.strip():
            return None
        return self.rewrites.take(query).result()

    def _ranked(self, query: str, *, dense: bool = False, rewrite: str | None = None) -> _Ranked | None:
        conn = self._conn()
        if conn is None:
            return None
        try:
            total = conn.execute("SELECT count(*) FROM ix_chunks").fetchone()[0]
            if not total:
                return None
            if rewrite is not None:  # fetched by the caller
                return self._rank_rewritten(conn, query, rewrite, total, dense=dense)
            if self.rewrites is None:
                return self._rank(conn, query, total, dense=dense)
            # The model rewrite runs beside the lexical search, not before it (started even earlier by
            # `start_rewrite` when the caller knows the question ahead): the question is ranked while
            # the rewrite is on its way, and the rewrite is used if it arrives within what is worth
            # waiting for (rewrite_wait.py; a cached one always is). A late one still lands in the
            # cache for the thread's follow-ups and repeats; this answer goes on without it.
            pending = self.rewrites.take(query)
            plain = None if pending.done() else self._rank(conn, query, total, dense=dense)  # here: rank once
            return self._rank_rewritten(conn, query, pending.result(), total, dense=dense, plain=plain)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) or "no such column" in str(exc):
                return None
            raise

    def _rank_rewritten(
        self,
        conn: sqlite3.Connection,
        query: str,
        extra: str | None,
        total: int,
        *,
        dense: bool,
        plain: _Ranked | None = None,
    ) -> _Ranked | None:
        """The question ranked with its rewrite, if the rewrite is about it; else the question alone
        (`plain`, when already ranked)."""
        if extra and not on_topic(plain.concepts if plain is not None else self._weigh(conn, query, total), extra):
            log.info("query rewrite ignored: it is not about the question")
            extra = None
        # Searched together with the question, as one query. Measured with bench/rewrites.yaml on
        # the 14 questions it covers (recall@5 / MRR@10): question alone 0.786 / 0.722; one query
        # 0.929 / 0.744; RRF of the two rankings 0.857 / 0.781.
        combined = self._rank(conn, query + "\n" + extra, total, dense=dense) if extra else None
        if combined is not None:
            return combined
        return plain if plain is not None else self._rank(conn, query, total, dense=dense)

    def _entities(self, conn: sqlite3.Connection) -> list[Entity]:
        """The services the index knows of, rediscovered whenever the index changed."""
        signature = conn.execute("SELECT count(*), max(indexed_at), sum(chunks) FROM ix_files").fetchone()
        with self._entity_lock:
            if self._entity_cache is not None and self._entity_cache[0] == signature:
                return self._entity_cache[1]
        entities = discover(conn)
        with self._entity_lock:
            self._entity_cache = (signature, entities)
        return entities

    def _hubs(self, conn: sqlite3.Connection) -> list[int]:
        """Top-level current team docs (README, ARCHITECTURE, CLAUDE.md…): the overview, always considered."""
        return [
            fid
            for (fid,) in conn.execute(
                "SELECT id FROM ix_files WHERE source != 'knowledge' AND instr(path, '/') = 0 "
                "AND coalesce(status, 'current') = 'current' ORDER BY chunks DESC LIMIT ?",
                (MAX_HUBS,),
            )
        ]

    def _weigh(self, conn: sqlite3.Connection, query: str, total: int) -> list[Concept]:
        """The question's concepts found in the index, weighted by IDF (as `_rank` weighs them)."""
        concepts = analyse(query)
        terms = list(dict.fromkeys(t for c in concepts for t in c.terms()))[:MAX_TERMS]
        return _weighted(concepts, _document_frequencies(conn, terms), total)

    def _rank(self, conn: sqlite3.Connection, query: str, total: int, *, dense: bool = False) -> _Ranked | None:
        """Candidates for one query scored as chunks and as documents (with `dense`, and a dense
        ranker, the outlines' similarity joins the document scores: for `context`, which picks
        documents; `search` ranks chunks, where it measured no different and would only cost time)."""
        concepts = analyse(query)
        if not concepts:
            return None
        beside = self.dense.start(query, concepts) if dense and self.dense is not None else None  # a thread
        question_terms = {t for c in concepts for t in c.terms()}
        entities = recognise(query, question_terms, self._entities(conn))
        for entity in entities:  # a chunk naming the service answers the concept that named it
            for concept in concepts:
                if any(t in entity.strong or t in entity.weak for t in concept.terms()):
                    concept.add((entity.ident,))
        all_terms: list[str] = []
        for concept in concepts:
            for t in concept.terms():
                if t not in all_terms:
                    all_terms.append(t)
        all_terms = all_terms[:MAX_TERMS]
        df = _document_frequencies(conn, all_terms)
        live = _weighted(concepts, df, total)
        if not live:
            return None
        terms = [t for t in all_terms if t in df]
        # One pass over the index: every matching chunk's BM25, ids only (cheap), best first.
        ranked_ids = conn.execute(
            "SELECT rowid, bm25(ix_fts, ?, ?, ?, ?) AS r FROM ix_fts WHERE ix_fts MATCH ? ORDER BY r LIMIT ?",
            (*WEIGHTS, _fts_query(terms), WIDE_CANDIDATES),
        ).fetchall()
        chosen = ranked_ids[:CANDIDATES]
        # BM25 favours short chunks: a long authoritative doc whose outline names the topic (an
        # overview's "Notification Service" section) would never be a candidate. Documents are also
        # ranked whole (title, headings, path); the best of them, and the top-level overview docs,
        # bring their best-matching chunks from the wider ranking.
        doc_rank = conn.execute(
            "SELECT rowid, bm25(ix_docs_fts, 3.0, 2.0, 2.0) AS r FROM ix_docs_fts WHERE ix_docs_fts MATCH ? "
            "ORDER BY r LIMIT ?",
            (_fts_query(terms), DOC_CANDIDATES),
        ).fetchall()
        dense_docs = beside.candidates() if beside is not None else []
        wanted = set(dict.fromkeys([*(f for f, _ in doc_rank), *self._hubs(conn), *dense_docs]))
        if wanted and len(ranked_ids) > len(chosen):
            rest = ranked_ids[len(chosen) :]
            file_of = dict(
                conn.execute(
                    f"SELECT id, file_id FROM ix_chunks WHERE id IN ({','.join('?' * len(ranked_ids))})",
                    [r[0] for r in ranked_ids],
                ).fetchall()
            )
            wanted -= {file_of.get(r[0]) for r in chosen}
            taken: dict[int, int] = {}
            for row in rest:
                fid = file_of.get(row[0])
                if fid in wanted and taken.get(fid, 0) < PER_DOC_CANDIDATES:
                    taken[fid] = taken.get(fid, 0) + 1
                    chosen.append(row)
        bm25_of = dict(chosen)
        rows = (
            [
                (rowid, bm25_of[rowid], title, heading, path, body)
                for rowid, title, heading, path, body in conn.execute(
                    "SELECT rowid, title, heading, path, body FROM ix_fts "
                    f"WHERE rowid IN ({','.join('?' * len(chosen))})",
                    list(bm25_of),
                )
            ]
            if chosen
            else []
        )
        if not rows:
            return None
        best_bm25 = max(-r[1] for r in rows) or 1.0
        total_weight = sum(c.weight for c in live)
        scored: list[_Scored] = []
        for rowid, r, title, heading, path, body in rows:
            body_terms = set(body.split())
            present = body_terms | set(title.split()) | set(heading.split()) | set(path.split())
            coverage = sum(c.weight for c in live if c.matched(present)) / total_weight
            score = COVERAGE_WEIGHT * coverage + BM25_WEIGHT * (-r / best_bm25)
            scored.append((score, rowid, body_terms))
        scored.sort(key=lambda s: -s[0])
        ids = [rowid for _, rowid, _ in scored]
        chunk_file: dict[int, int] = {}
        files: dict[int, _File] = {}
        for cid, fid, source, path, title, status, date, date_source in conn.execute(
            "SELECT c.id, f.id, f.source, f.path, f.title, f.status, f.doc_date, f.date_source "
            f"FROM ix_chunks c JOIN ix_files f ON f.id = c.file_id WHERE c.id IN ({','.join('?' * len(ids))})",
            ids,
        ):
            chunk_file[cid] = fid
            if fid not in files:
                files[fid] = _File(fid, source, path, title or "", status or "current", date, date_source)
        doc_scores = self._doc_scores(scored, chunk_file, files, entities)
        _weigh_outlines(conn, live, doc_scores)
        if beside is not None:
            doc_scores = beside.blend(doc_scores)
        return _Ranked(scored, live, chunk_file, files, doc_scores, entities)

    @staticmethod
    def _doc_scores(
        scored: list[_Scored], chunk_file: dict[int, int], files: dict[int, _File], entities: list[Entity]
    ) -> dict[int, float]:
        """Each file's score: its best chunks (decaying), times its status prior and a service's own-docs boost."""
        per_file: dict[int, list[float]] = {}
        for score, rowid, _ in scored:
            fid = chunk_file.get(rowid)
            if fid is not None:
                per_file.setdefault(fid, []).append(score)
        out: dict[int, float] = {}
        for fid, scores in per_file.items():
            top = [*sorted(scores, reverse=True)[:3], 0.0, 0.0]
            value = top[0] + SECOND_SECTION * top[1] + THIRD_SECTION * top[2]
            info = files[fid]
            value *= STATUS_PRIOR.get(info.status, 1.0)
            if info.source != "knowledge" and "/" not in info.path and info.status == "current":
                value *= HUB_PRIOR  # a top-level current doc (README, ARCHITECTURE, CLAUDE.md) describes the whole
            if info.source != "knowledge" and entities:
                value *= 1 + ENTITY_BOOST * max(e.ownership(info.path) for e in entities)
            out[fid] = value
        return out

    def _hit(self, info: _File, *, heading: str, text: str, score: float, live: list[Concept]) -> Hit:
        url = None
        if self.docs_url and info.source != "knowledge":
            url = self.docs_url.rstrip("/") + "/" + info.path
        return Hit(
            path=info.path,
            heading=heading,
            score=round(score, 4),
            snippet=snippet(text, live),
            text=text,
            source=info.source,
            url=url,
            title=info.title,
            status=info.status,
            date=info.date,
            date_source=info.date_source,
        )

    @staticmethod
    def _fact_score(ranked: _Ranked, item: _Scored) -> float:
        """A chunk's rank for `search`: its own score, nudged by its document's."""
        fid = ranked.chunk_file.get(item[1], -1)
        return item[0] + DOC_BLEND * ranked.doc_scores.get(fid, 0.0)

    def _hits(self, conn: sqlite3.Connection, ranked: _Ranked, k: int) -> list[Hit]:
        """The ranking walked into k distinct places, as Hits: files by document score, each by its best chunk."""
        scored = sorted(ranked.chunks, key=lambda s: -self._fact_score(ranked, s))
        ids = [rowid for _, rowid, _ in scored]
        meta = {
            row[0]: row[1:]
            for row in conn.execute(
                f"SELECT id, file_id, heading, text FROM ix_chunks WHERE id IN ({','.join('?' * len(ids))})", ids
            )
        }
        # Walk the ranking once: a passage that nearly repeats one already seen is dropped, and
        # its file becomes an alias of the earlier one (a copied document is one place, not two).
        # The first results take one passage per place; second passages fill up after.
        chosen: list[_Scored] = []
        later: list[_Scored] = []
        seen: list[tuple[int, set[str]]] = []  # (place, body terms) of passages kept so far
        alias: dict[int, int] = {}
        places: set[int] = set()
        for item in scored:
            _, rowid, body_terms = item
            if rowid not in meta:
                continue
            file_id = meta[rowid][0]
            place = alias.get(file_id, file_id)
            duplicate_of = next((p for p, other in seen if _jaccard(body_terms, other) >= DUPLICATE_JACCARD), None)
            if duplicate_of is not None:
                if duplicate_of != place:
                    alias[file_id] = duplicate_of
                continue
            seen.append((place, body_terms))
            if place in places:
                later.append(item)
                continue
            places.add(place)
            chosen.append(item)
            if len(chosen) >= k:
                break
        if len(chosen) < k:  # fewer distinct places than k: second passages from the same places
            chosen.extend(later[: k - len(chosen)])
        hits = []
        score_of = {rowid: score for score, rowid, _ in chosen}
        for _, rowid, _ in chosen:
            file_id, heading, text = meta[rowid]
            score = self._fact_score(ranked, (score_of[rowid], rowid, set()))
            hits.append(self._hit(ranked.files[file_id], heading=heading, text=text, score=score, live=ranked.concepts))
        return hits

    def _passages(self, conn: sqlite3.Connection, ranked: _Ranked, budget: int) -> list[Hit]:
        """Ranked documents assembled into passages within the token budget."""
        matched: dict[int, list[assembly.Section]] = {}
        texts = {
            row[0]: row[1:]
            for row in conn.execute(
                f"SELECT id, ordinal, heading, text FROM ix_chunks WHERE id IN ({','.join('?' * len(ranked.chunks))})",
                [rowid for _, rowid, _ in ranked.chunks],
            )
        }
        seen: list[set[str]] = []
        allowed = set(sorted(ranked.doc_scores, key=lambda f: -ranked.doc_scores[f])[:MAX_ASSEMBLY_DOCS])
        for score, rowid, body_terms in ranked.chunks:  # best first
            fid = ranked.chunk_file.get(rowid)
            if fid is None or rowid not in texts:
                continue
            if len(matched.get(fid, ())) >= assembly.MAX_SECTIONS:
                continue
            if fid not in allowed:
                continue
            if any(_jaccard(body_terms, other) >= DUPLICATE_JACCARD for other in seen):
                continue  # a copy of a passage already taken (the corpus repeats itself)
            if len(seen) < DUPLICATE_WINDOW:
                seen.append(body_terms)
            ordinal, heading, text = texts[rowid]
            matched.setdefault(fid, []).append(assembly.Section(ordinal, heading, text, score))
        docs = [
            assembly.Doc(
                fid,
                ranked.doc_scores[fid],
                sections,
                knowledge=ranked.files[fid].source == "knowledge",
                folder=ranked.files[fid].path.rpartition("/")[0],
            )
            for fid, sections in matched.items()
        ]
        docs.sort(key=lambda d: -d.score)

        def load(doc: assembly.Doc) -> dict[int, assembly.Section]:
            scores = {s.ordinal: s.score for s in doc.matched}
            near = sorted({s.ordinal + d for s in doc.matched for d in range(-assembly.REACH, assembly.REACH + 1)})
            return {
                ordinal: assembly.Section(ordinal, heading, text, scores.get(ordinal, 0.0))
                for ordinal, heading, text in conn.execute(
                    "SELECT ordinal, heading, text FROM ix_chunks WHERE file_id = ? "
                    f"AND ordinal IN ({','.join('?' * len(near))})",
                    (doc.key, *near),
                )
            }

        passages = assembly.assemble(docs, load, budget_tokens=budget)
        return [
            self._hit(ranked.files[p.doc.key], heading=p.heading, text=p.text, score=p.doc.score, live=ranked.concepts)
            for p in passages
        ]


def _clean_title(title: str) -> str:
    title = " ".join(title.split())
    start, end = 0, len(title)
    while start < end and (title[start].isspace() or unicodedata.category(title[start]) in _DECORATION):
        start += 1
    while end > start and (title[end - 1].isspace() or unicodedata.category(title[end - 1]) in _DECORATION):
        end -= 1
    return title[start:end]


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    small, large = sorted((len(a), len(b)))
    if small < DUPLICATE_JACCARD * large:  # the Jaccard index cannot exceed small / large: skip the set work
        return small / large
    return len(a & b) / len(a | b)
