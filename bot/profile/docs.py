"""The team's docs as the index holds them: one `Doc` per indexed file (the bundled library left out).

The profile is drafted from the index rather than from the folders, so its citations name
exactly the paths `archbot search --json` prints and the model is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.retrieval.index import KNOWLEDGE_SOURCE
from bot.store import connect


@dataclass(frozen=True)
class Doc:
    path: str  # as `search --json` prints it: relative to its docs folder, '/'-separated
    source: str  # the docs folder's name
    title: str
    text: str  # the chunks in order, each under its innermost heading


def load_docs(db_path: Path) -> list[Doc]:
    """Every indexed team doc (not `knowledge/`), sorted by path; [] when nothing is indexed."""
    if not db_path.is_file():
        return []
    db = connect(db_path)
    try:
        if not db.table("ix_files").exists():
            return []
        rows = db.query(
            "SELECT f.path, f.source, f.title, c.heading, c.text FROM ix_chunks c "
            "JOIN ix_files f ON f.id = c.file_id WHERE f.source != ? ORDER BY f.path, f.source, c.ordinal",
            [KNOWLEDGE_SOURCE],
        )
        parts: dict[tuple[str, str], list[str]] = {}
        titles: dict[tuple[str, str], str] = {}
        for row in rows:
            key = (row["path"], row["source"])
            titles[key] = row["title"] or ""
            heading = (row["heading"] or "").split(" > ")[-1].strip()
            text = row["text"] or ""
            parts.setdefault(key, []).append(f"#### {heading}\n{text}" if heading else text)
    finally:
        db.conn.close()
    return [Doc(path=p, source=s, title=titles[(p, s)], text="\n\n".join(chunks)) for (p, s), chunks in parts.items()]
