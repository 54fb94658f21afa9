"""What `/arch-review` reviews: the text given, or the team doc it names.

`/arch-review docs/adr/0007-outbox.md` reviews that file from the indexed docs folders (or
`knowledge/`). The path is resolved inside those folders only: `..`, absolute paths and
symlinks that leave a folder are refused, so a slash command cannot read arbitrary files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bot.config import KNOWLEDGE_DIR, Settings

MAX_PROPOSAL_CHARS = 60_000
TITLE_CHARS = 80  # a review's title, from the first line of its text
_PATHLIKE = re.compile(r"^[\w./\-\u4e00-\u9fff]+\.(md|markdown|mdx|txt|rst)$", re.IGNORECASE)


@dataclass(frozen=True)
class Proposal:
    text: str  # what the model reviews
    title: str
    path: str | None = None  # the doc reviewed, when the command named one


def find_doc(settings: Settings, name: str) -> Path | None:
    """The file `name` inside a docs folder or knowledge/, never outside them."""
    for folder in [*settings.docs, KNOWLEDGE_DIR]:
        root = folder.resolve()
        candidate = (root / name.lstrip("/")).resolve()
        if candidate.is_file() and candidate.is_relative_to(root):
            return candidate
        # Names as `archbot search --json` prints them may start with the folder's own name.
        parts = Path(name).parts
        if len(parts) > 1 and parts[0] == folder.name:
            candidate = (root / Path(*parts[1:])).resolve()
            if candidate.is_file() and candidate.is_relative_to(root):
                return candidate
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
    if _PATHLIKE.match(stripped):
        path = find_doc(settings, stripped)
        if path is not None:
            try:
                content = path.read_text(encoding="utf-8", errors="replace")[:MAX_PROPOSAL_CHARS]
            except OSError:
                content = ""
            if content.strip():
                return Proposal(
                    text=f"Review this design document ({stripped}):\n\n{content}", title=stripped, path=stripped
                )
    return Proposal(text=stripped, title=short_title(stripped) or "a proposal")
