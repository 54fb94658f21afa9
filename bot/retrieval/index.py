"""Indexing: walk the doc folders, chunk what changed, swap it into the index in one transaction.

Incremental by design. A file whose size and mtime match the stored row is not even read;
one whose bytes hash the same is only re-stamped; only changed files are chunked and
analysed. Files that vanished (or became unreadable) leave the index. All changes of a run
are written in one `BEGIN IMMEDIATE … COMMIT`, so a searcher on another connection (WAL)
sees either the old index or the new one, never a half-built one.

Odd files never stop a run: they are skipped and counted by reason (see `SKIP_REASONS`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlite_utils import Database

from bot.config import KNOWLEDGE_DIR, Settings
from bot.errors import IndexError_
from bot.retrieval import chunking
from bot.retrieval.provenance import detect_status, doc_date, git_dates
from bot.retrieval.redact import VERSION as REDACTION_VERSION
from bot.retrieval.redact import redact_secrets, redaction_totals
from bot.retrieval.schema import migrate
from bot.retrieval.text import index_text
from bot.store import connect

log = logging.getLogger(__name__)

MAX_BYTES = 2 * 1024 * 1024
DOC_SUFFIXES = frozenset({".md", ".markdown", ".mdx", ".txt"})
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv", ".venv"})
SKIP_REASONS = (
    "binary",
    "invalid_utf8",
    "too_large",
    "empty",
    "unreadable",
    "symlink_loop",
    "symlink_outside",  # a link to a file or folder outside the docs folder: never followed
    "hidden",
    "tooling",
)
KNOWLEDGE_SOURCE = "knowledge"
# Stored with each file's content hash. Bump it when chunking or analysis changes what a file
# is indexed as: every file then counts as changed on the next run (one transaction, as always).
# a3: identifier-safe headings, unstemmed -ness words, provenance; a4: the documents FTS table.
ANALYSIS_VERSION = "a4" + REDACTION_VERSION


@dataclass
class IndexReport:
    """What one index run did."""

    indexed: int = 0  # files (re)chunked
    unchanged: int = 0
    removed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    chunks: int = 0  # chunks written this run
    total_chunks: int = 0  # chunks in the index afterwards
    seconds: float = 0.0
    redacted: Counter[str] = field(default_factory=Counter)  # this run: kind -> secret values redacted
    redacted_values: int = 0  # in the whole index afterwards
    redacted_files: int = 0

    def summary(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
        return (
            f"indexed {self.indexed} files, {self.unchanged} unchanged, {self.removed} removed, "
            f"{skipped} skipped{f' ({reasons})' if reasons else ''}; "
            f"{self.chunks} chunks written, {self.total_chunks} in index; "
            f"{self.redacted_values} secret values redacted in {self.redacted_files} files; {self.seconds:.1f}s"
        )


@dataclass
class _Found:
    source: str
    rel: str  # '/'-separated, relative to the source folder
    path: Path


@dataclass
class _Row:
    id: int
    hash: str
    size: int
    mtime_ns: int


def sources_for(
    settings: Settings, paths: list[Path] | None = None, *, replace: bool = False
) -> list[tuple[str, Path]]:
    """(source name, folder) pairs: knowledge/ first, then the docs folders (ARCHBOT_DOCS), then
    `paths`; with `replace`, `paths` stand in for ARCHBOT_DOCS instead of adding to them."""
    out: list[tuple[str, Path]] = []
    if KNOWLEDGE_DIR.is_dir():
        out.append((KNOWLEDGE_SOURCE, KNOWLEDGE_DIR))
    folders = [Path(p) for p in (paths or [])] if replace else [*map(Path, settings.docs), *map(Path, paths or [])]
    taken = {name for name, _ in out}
    seen = {KNOWLEDGE_DIR.resolve()} if KNOWLEDGE_DIR.is_dir() else set()
    for folder in folders:
        if not folder.is_dir():
            raise IndexError_(f"not a folder: {folder}", path=str(folder))
        if folder.resolve() in seen:  # knowledge/ itself, or a folder given twice
            continue
        seen.add(folder.resolve())
        name = folder.resolve().name or "docs"
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        out.append((name, folder))
    return out


def left_out(source: str, rel: str) -> bool:
    """Files the indexer leaves out on purpose (not skipped, not counted): knowledge/README.md,
    the library's own index page, repeats every page's terms and would outrank them."""
    return source == KNOWLEDGE_SOURCE and rel == "README.md"


def _walk(source: str, root: Path, skipped: Counter[str]) -> list[_Found]:
    """Doc files under root; symlinks are followed only inside root, directory links once (loops
    and links that leave the folder are counted, not followed)."""
    found: list[_Found] = []
    try:
        inside = os.path.realpath(root, strict=True)
    except (OSError, RuntimeError):
        skipped["unreadable"] += 1
        return found

    def outside(target: str) -> bool:
        return target != inside and not target.startswith(inside.rstrip(os.sep) + os.sep)

    seen_dirs: set[str] = set()
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            real = os.path.realpath(folder, strict=True)
        except (OSError, RuntimeError):
            skipped["symlink_loop"] += 1
            continue
        if real in seen_dirs:
            skipped["symlink_loop"] += 1
            continue
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            skipped["unreadable"] += 1
            continue
        for entry in entries:
            name = entry.name
            rel = f"{prefix}{name}"
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                if name.startswith(".") or name in SKIP_DIRS:
                    skipped["hidden" if name.startswith(".") else "tooling"] += 1  # a whole folder counts once
                    continue
                if entry.is_symlink():
                    try:
                        target = os.path.realpath(entry.path, strict=True)
                    except (OSError, RuntimeError):
                        skipped["symlink_loop"] += 1
                        continue
                    if target in seen_dirs or real.startswith(target + os.sep) or real == target:
                        skipped["symlink_loop"] += 1
                        continue
                    if outside(target):
                        skipped["symlink_outside"] += 1
                        continue
                stack.append((Path(entry.path), rel + "/"))
                continue
            if Path(name).suffix.lower() not in DOC_SUFFIXES:
                continue
            if name.startswith("."):
                skipped["hidden"] += 1
                continue
            if left_out(source, rel):
                continue
            if entry.is_symlink():
                try:
                    os.stat(entry.path)
                except OSError as exc:
                    skipped["symlink_loop" if exc.errno == 40 else "unreadable"] += 1
                    continue
                if outside(os.path.realpath(entry.path)):
                    skipped["symlink_outside"] += 1
                    continue
            found.append(_Found(source, rel, Path(entry.path)))
    return found


def _read(path: Path, st: os.stat_result) -> tuple[str | None, str, bytes]:
    """(text or None, skip reason, raw bytes)."""
    if st.st_size > MAX_BYTES:
        return None, "too_large", b""
    if st.st_size == 0:
        return None, "empty", b""
    try:
        raw = path.read_bytes()
    except OSError:
        return None, "unreadable", b""
    if len(raw) > MAX_BYTES:
        return None, "too_large", b""
    if b"\x00" in raw[:8192]:
        return None, "binary", raw
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "invalid_utf8", raw
    if not text.strip():
        return None, "empty", raw
    return text, "", raw


def _path_text(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    return index_text(stem.replace("/", " "))


def open_index(db_path: Path) -> Database:
    db = connect(db_path)
    migrate(db)
    return db


def index_sources(
    settings: Settings, paths: list[Path] | None = None, *, replace: bool = False, progress: bool = False
) -> IndexReport:
    """Bring the index in settings.db_path up to date with knowledge/ and the docs folders.

    Without `paths` the index becomes exactly knowledge/ + ARCHBOT_DOCS (other sources leave it).
    `paths` add to those: sources indexed earlier and not walked now are kept. With `replace`,
    the index becomes knowledge/ + `paths` and everything else leaves it.
    """
    started = time.perf_counter()
    report = IndexReport()
    skipped: Counter[str] = Counter()
    roots = sources_for(settings, paths, replace=replace)
    walked = {name for name, _ in roots}
    prune_all = not paths or replace
    db = open_index(settings.db_path)
    try:
        stored: dict[tuple[str, str], _Row] = {
            (r["source"], r["path"]): _Row(r["id"], r["hash"], r["size"], r["mtime_ns"])
            for r in db.query("SELECT id, source, path, hash, size, mtime_ns FROM ix_files")
        }
        found: list[_Found] = []
        for source, root in roots:
            found.extend(_walk(source, root, skipped))
        git_by_source: dict[str, dict[str, str]] = {}  # read lazily: only when a file of that folder changed
        roots_by_source = dict(roots)

        restamp: list[tuple[int, int, int]] = []  # (size, mtime_ns, id)
        changed: list[_Prepared] = []
        keep: set[tuple[str, str]] = set()
        bar = _progress(progress, len(found))
        try:
            for item in found:
                if bar is not None:
                    bar.advance()
                key = (item.source, item.rel)
                try:
                    st = item.path.stat()
                except OSError as exc:
                    skipped["symlink_loop" if exc.errno == 40 else "unreadable"] += 1
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                row = stored.get(key)
                current = row is not None and row.hash.startswith(ANALYSIS_VERSION + ":")
                if current and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns:
                    keep.add(key)
                    report.unchanged += 1
                    continue
                text, reason, raw = _read(item.path, st)
                if text is None:
                    skipped[reason] += 1
                    continue
                digest = ANALYSIS_VERSION + ":" + hashlib.blake2b(raw, digest_size=16).hexdigest()
                keep.add(key)
                if row is not None and row.hash == digest:
                    restamp.append((st.st_size, st.st_mtime_ns, row.id))
                    report.unchanged += 1
                    continue
                fallback = item.rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                redaction = redact_secrets(text)  # credentials never reach the index (bot/retrieval/redact.py)
                report.redacted.update(redaction.kinds)
                doc = chunking.parse(redaction.text, fallback_title=fallback)
                if not doc.chunks:
                    skipped["empty"] += 1
                    keep.discard(key)
                    continue
                if item.source not in git_by_source:
                    git_by_source[item.source] = git_dates(roots_by_source[item.source])
                date, date_source = doc_date(
                    rel=item.rel, text=text, mtime_ns=st.st_mtime_ns, git=git_by_source[item.source]
                )
                prepared = _prepare(item, digest, st.st_size, st.st_mtime_ns, doc)
                prepared.status = detect_status(item.rel, doc.title, text)
                prepared.doc_date, prepared.date_source = date, date_source
                changed.append(prepared)
        finally:
            if bar is not None:
                bar.close()

        gone = [row.id for key, row in stored.items() if key not in keep and (prune_all or key[0] in walked)]
        replaced = [stored[(p.item.source, p.item.rel)].id for p in changed if (p.item.source, p.item.rel) in stored]
        report.removed = len(gone)
        report.indexed = len(changed)
        report.skipped = dict(skipped)
        if changed or gone or restamp:
            report.chunks = _write(db, changed, gone + replaced, restamp)
        report.total_chunks = db.execute("SELECT count(*) FROM ix_chunks").fetchone()[0]
        report.redacted_values, report.redacted_files = redaction_totals(db)
    finally:
        db.close()
    report.seconds = time.perf_counter() - started
    log.info(
        "index run done",
        extra={
            "indexed": report.indexed,
            "unchanged": report.unchanged,
            "removed": report.removed,
            "skipped": report.skipped,
            "chunks": report.chunks,
            "redacted": dict(report.redacted),
            "seconds": round(report.seconds, 3),
        },
    )
    return report


@dataclass
class _Prepared:
    item: _Found
    digest: str
    size: int
    mtime_ns: int
    title: str
    title_terms: str
    path_terms: str
    rows: list[tuple[int, str, str, str, str]]  # ordinal, heading, text, heading terms, body terms
    headings_terms: str = ""
    status: str = "current"
    doc_date: str | None = None
    date_source: str | None = None


def _prepare(item: _Found, digest: str, size: int, mtime_ns: int, doc: chunking.Document) -> _Prepared:
    """Analyse one changed file (the slow part; runs before the write lock is taken)."""
    rows = []
    for chunk in doc.chunks:
        heading = " > ".join(chunk.heading)
        rows.append((chunk.ordinal, heading, chunk.text, index_text(heading), index_text(chunk.text)))
    return _Prepared(
        item=item,
        digest=digest,
        size=size,
        mtime_ns=mtime_ns,
        title=doc.title,
        # Title, tags and aliases share the title column: each names what the whole document is about.
        title_terms=index_text(" ".join([doc.title, *doc.tags, *doc.aliases])),
        path_terms=_path_text(item.rel),
        rows=rows,
        headings_terms=index_text(" ".join(dict.fromkeys(h for c in doc.chunks for h in c.heading))),
    )


def _write(db: Database, prepared: list[_Prepared], drop_ids: list[int], restamp: list[tuple[int, int, int]]) -> int:
    """Apply one run's changes in a single transaction. Returns chunks written."""
    conn = db.conn
    written = 0
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for file_id in drop_ids:
            conn.execute("DELETE FROM ix_fts WHERE rowid IN (SELECT id FROM ix_chunks WHERE file_id = ?)", (file_id,))
            conn.execute("DELETE FROM ix_chunks WHERE file_id = ?", (file_id,))
            conn.execute("DELETE FROM ix_files WHERE id = ?", (file_id,))
            conn.execute("DELETE FROM ix_docs_fts WHERE rowid = ?", (file_id,))
        conn.executemany("UPDATE ix_files SET size = ?, mtime_ns = ? WHERE id = ?", restamp)
        next_id = (conn.execute("SELECT max(id) FROM ix_chunks").fetchone()[0] or 0) + 1
        for p in prepared:
            cur = conn.execute(
                "INSERT INTO ix_files (source, path, hash, size, mtime_ns, title, chunks, indexed_at,"
                " status, doc_date, date_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.item.source,
                    p.item.rel,
                    p.digest,
                    p.size,
                    p.mtime_ns,
                    p.title,
                    len(p.rows),
                    now,
                    p.status,
                    p.doc_date,
                    p.date_source,
                ),
            )
            file_id = cur.lastrowid
            conn.execute(
                "INSERT INTO ix_docs_fts (rowid, title, headings, path) VALUES (?, ?, ?, ?)",
                (file_id, p.title_terms, p.headings_terms, p.path_terms),
            )
            chunk_rows = []
            fts_rows = []
            for ordinal, heading, text, heading_terms, body_terms in p.rows:
                chunk_rows.append((next_id, file_id, ordinal, heading, text))
                fts_rows.append((next_id, p.title_terms, heading_terms, p.path_terms, body_terms))
                next_id += 1
            conn.executemany(
                "INSERT INTO ix_chunks (id, file_id, ordinal, heading, text) VALUES (?, ?, ?, ?, ?)", chunk_rows
            )
            conn.executemany("INSERT INTO ix_fts (rowid, title, heading, path, body) VALUES (?, ?, ?, ?, ?)", fts_rows)
            written += len(p.rows)
        if written > 2000:
            conn.execute("INSERT INTO ix_fts (ix_fts) VALUES ('optimize')")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return written


class _Bar:
    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("files", total=total)
        self._progress.start()

    def advance(self) -> None:
        self._progress.advance(self._task)

    def close(self) -> None:
        self._progress.stop()


def _progress(enabled: bool, total: int) -> _Bar | None:
    return _Bar(total) if enabled and total else None
