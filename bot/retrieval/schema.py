"""The index's tables, under their own migration set ("archbot-index") in the bot's SQLite file.

- `ix_files`: one row per indexed file: where it came from, its content hash and stat
  signature (a no-change re-index compares stats and reads nothing).
- `ix_chunks`: the passages as sent to the model, with their heading path.
- `ix_fts`: FTS5 over pre-analysed terms (see `text.py`) in four weighted columns:
  title, heading path, file path, body. The tokenizer is `unicode61` with `_` as a token
  character: our analyser has already segmented Chinese and joined identifiers with `_`,
  so unicode61 only has to split on the spaces we put there. rowid = `ix_chunks.id`.
- `ix_rewrites`: cached model rewrites of questions (optional feature).
- `ix_vectors` (m004): dense vectors of document outlines by content hash (optional: dense.py).
- `ix_rewrite_latency` (m005): the recent round trips of model rewrites, per model, so a new
  process knows how long a rewrite is worth waiting for (rewrite_wait.py).
- `ix_files.status`, `.doc_date`, `.date_source` (m002): provenance shown to the model with each
  passage (see provenance.py).

Writers change these tables inside one transaction per index run; readers on WAL keep
seeing the previous snapshot until it commits.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.store import apply_migrations

migrations = Migrations("archbot-index")


@migrations()
def m001_index(db: Database) -> None:
    db.table("ix_files").create(
        {
            "id": int,
            "source": str,
            "path": str,
            "hash": str,
            "size": int,
            "mtime_ns": int,
            "title": str,
            "chunks": int,
            "indexed_at": float,
        },
        pk="id",
        not_null={"source", "path", "hash"},
    )
    db.table("ix_files").create_index(["source", "path"], unique=True)
    db.table("ix_chunks").create(
        {
            "id": int,
            "file_id": int,
            "ordinal": int,
            "heading": str,
            "text": str,
        },
        pk="id",
        foreign_keys=[("file_id", "ix_files", "id")],
    )
    db.table("ix_chunks").create_index(["file_id"])
    db.execute(
        "CREATE VIRTUAL TABLE ix_fts USING fts5("
        "title, heading, path, body, "
        "tokenize = \"unicode61 remove_diacritics 2 tokenchars '_'\")"
    )
    db.execute("CREATE VIRTUAL TABLE ix_vocab USING fts5vocab(ix_fts, 'row')")
    db.table("ix_rewrites").create({"key": str, "value": str, "created_at": float}, pk="key")


@migrations()
def m002_provenance(db: Database) -> None:
    """Each file's status (current / archived / proposal / report) and date, with where the date came from."""
    files = db.table("ix_files")
    files.add_column("status", str)
    files.add_column("doc_date", str)
    files.add_column("date_source", str)


@migrations()
def m003_docs_fts(db: Database) -> None:
    """Documents as a whole (title, every heading, path): long docs whose chunks BM25 ranks low
    still surface when their outline names the topic. rowid = `ix_files.id`."""
    db.execute(
        "CREATE VIRTUAL TABLE ix_docs_fts USING fts5("
        "title, headings, path, "
        "tokenize = \"unicode61 remove_diacritics 2 tokenchars '_'\")"
    )


@migrations()
def m004_vectors(db: Database) -> None:
    """Dense vectors (optional, dense.py): one float32 vector per embedded text, keyed by a hash of
    the model and the text, so unchanged documents keep theirs through re-indexing."""
    db.execute("CREATE TABLE ix_vectors (hash TEXT PRIMARY KEY, vector BLOB NOT NULL)")


@migrations()
def m005_rewrite_latency(db: Database) -> None:
    """The last round trips (seconds, a JSON array) of the model rewrites of each model, when written."""
    db.execute("CREATE TABLE ix_rewrite_latency (model TEXT PRIMARY KEY, samples TEXT NOT NULL, updated_at REAL)")


def migrate(db: Database) -> None:
    apply_migrations(db, migrations)
