"""`archbot index` and `archbot search`: thin wrappers that print what the engine returns.

stdout carries results (for `--json`, exactly one JSON array); progress, hints and errors go
to stderr. Exit codes: 0 success, 1 runtime failure, 2 bad usage (e.g. a path that is not a
folder).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import click

from bot.config import Settings
from bot.errors import IndexError_
from bot.retrieval.search import Searcher
from bot.types import Hit


def index_command(settings: Settings, paths: list[Path], *, quiet: bool, replace: bool = False) -> int:
    """Index knowledge/ and the docs folders; print a one-line summary unless quiet.

    Folders given on the command line add to ARCHBOT_DOCS; `replace` indexes them instead."""
    if replace and not paths:
        raise click.UsageError("--replace needs the folders to index instead of ARCHBOT_DOCS")
    from bot.retrieval.index import index_sources

    try:
        report = index_sources(settings, paths or None, replace=replace, progress=not quiet and sys.stderr.isatty())
    except IndexError_ as exc:
        click.echo(f"archbot: {exc}", err=True)
        return 2
    except (OSError, sqlite3.Error) as exc:
        click.echo(f"archbot: indexing failed: {exc}", err=True)
        return 1
    if not quiet:
        click.echo(report.summary())
    if settings.dense:
        from bot.retrieval.dense import spawn_embedder

        if spawn_embedder(settings.db_path) is not None and not quiet:
            click.echo("embedding document outlines in the background (dense ranking)", err=True)
    return 0


def hit_json(hit: Hit) -> dict[str, object]:
    return {
        "path": hit.path,
        "heading": hit.heading,
        "score": hit.score,
        "snippet": hit.snippet,
        "source": hit.source,
        "url": hit.url,
        "title": hit.title,
    }


def search_command(settings: Settings, query: str, *, k: int, json_: bool) -> int:
    """Print the k best passages for a query (JSON array with --json)."""
    if not query.strip():
        raise click.UsageError("the query is empty")
    searcher = Searcher(settings.db_path, docs_url=settings.docs_url)
    try:
        hits = searcher.search(query, k)
    except sqlite3.Error as exc:
        click.echo(f"archbot: search failed: {exc}", err=True)
        return 1
    finally:
        searcher.close()
    if json_:
        click.echo(json.dumps([hit_json(h) for h in hits], ensure_ascii=False))
        if not hits and not _has_index(settings.db_path):
            click.echo("archbot: the index is empty; run `archbot index` first", err=True)
        return 0
    if not hits:
        if _has_index(settings.db_path):
            click.echo("No passages found.")
        else:
            click.echo("The index is empty: run `archbot index` first.")
        return 0
    for n, hit in enumerate(hits, 1):
        where = f"{hit.source}:{hit.path}"
        click.echo(click.style(f"{n}. {where}", bold=True) + f"  (score {hit.score:.3f})")
        if hit.heading:
            click.echo(f"   {hit.heading}")
        if hit.url:
            click.echo(f"   {hit.url}")
        click.echo(f"   {hit.snippet}")
        click.echo()
    return 0


def _has_index(db_path: Path) -> bool:
    if not db_path.is_file():
        return False
    try:
        conn = sqlite3.connect(str(db_path))
        try:
            return bool(conn.execute("SELECT count(*) FROM ix_chunks").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return False
