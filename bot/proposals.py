"""What `/arch-review` reviews: the text given, or the team doc it names.

`/arch-review docs/adr/0007-outbox.md` reviews that file from the indexed docs folders (or
`knowledge/`). Only a file that is in the index is read: the indexer's filters (hidden folders,
`node_modules/`, files over 2 MB, non-markdown) apply as they are, and `..`, absolute paths and
symlinks that leave a folder are refused, so a slash command cannot read arbitrary files. The
text read is redacted like the index (`bot/retrieval/redact.py`): no credential reaches the
model or the review. A path that names no indexed doc is refused (`Proposal.refused`).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bot.config import Settings
from bot.retrieval.redact import redact_secrets

MAX_PROPOSAL_CHARS = 60_000
TITLE_CHARS = 80  # a review's title, from the first line of its text
_PATHLIKE = re.compile(r"^[\w./\-\u4e00-\u9fff]+\.(md|markdown|mdx|txt|rst)$", re.IGNORECASE)
# One word with a slash or a file suffix (`config/.env`, `secrets.yaml`): a file, never a proposal.
_LOOKS_LIKE_A_FILE = re.compile(r"^\S*(?:/\S*|\.[A-Za-z0-9]{1,8})$")


@dataclass(frozen=True)
class Proposal:
    text: str  # what the model reviews
    title: str
    path: str | None = None  # the doc reviewed, when the command named one
    refused: bool = False  # the command named a file that is not an indexed doc: nothing was read


def _indexed(db_path: Path, source: str, rel: str) -> bool:
    """True when the index holds (source, rel): the file passed the indexer's filters."""
    if not db_path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2)) as db:
            row = db.execute("SELECT 1 FROM ix_files WHERE source = ? AND path = ?", (source, rel)).fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def find_doc(settings: Settings, name: str) -> Path | None:
    """The indexed doc `name` inside a docs folder or knowledge/; None for anything else."""
    from bot.retrieval.index import MAX_BYTES, sources_for

    try:
        folders = sources_for(settings)
    except Exception:  # a docs folder that is gone: only what still exists is searched
        return None
    for source, folder in folders:
        root = folder.resolve()
        parts = PurePosixPath(name.strip().lstrip("/")).parts
        # Names as `archbot search --json` prints them may start with the folder's own name.
        candidates = [parts, parts[1:]] if len(parts) > 1 and parts[0] in (folder.name, source) else [parts]
        for rel_parts in candidates:
            if not rel_parts or ".." in rel_parts:
                continue
            rel = "/".join(rel_parts)
            path = root / rel
            try:
                real = path.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if not real.is_relative_to(root) or not real.is_file() or real.stat().st_size > MAX_BYTES:
                continue
            if _indexed(settings.db_path, source, rel):
                return real
    return None


def short_title(text: str, limit: int = TITLE_CHARS) -> str:
    """The first line, shortened at a word boundary (with "…") when longer than `limit`."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:.-") + "…"


def resolve_proposal(settings: Settings, text: str) -> Proposal:
    """The proposal to review: a named doc's content, or the text itself."""
    stripped = text.strip()
    if _PATHLIKE.match(stripped) or _LOOKS_LIKE_A_FILE.match(stripped):
        path = find_doc(settings, stripped)
        content = ""
        if path is not None:
            try:
                content = path.read_text(encoding="utf-8", errors="replace")[:MAX_PROPOSAL_CHARS]
            except OSError:
                content = ""
        if not content.strip():
            return Proposal(text=stripped, title=stripped, path=stripped, refused=True)
        content = redact_secrets(content).text
        return Proposal(text=f"Review this design document ({stripped}):\n\n{content}", title=stripped, path=stripped)
    return Proposal(text=stripped, title=short_title(stripped) or "a proposal")
