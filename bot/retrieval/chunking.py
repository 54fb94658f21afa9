"""Markdown → chunks that keep their place in the document.

A chunk is the text under one heading path (`Guide > Deploy > Ports`), cut at block
boundaries: a fenced code block, a table or a list is never split while it fits in
`MAX_CHARS`; only a block larger than that is cut, at line boundaries. Tiny sections
(a heading and a line) are merged into the following sibling's chunk so they do not
crowd the ranking with near-empty passages; the merged chunk takes the heading of the
larger part (the small one's heading stays in its text).

Sizes are in characters of the rendered text. One Chinese character carries roughly as
much as an English word, so CJK characters count `CJK_WEIGHT` each. Measured with
bench/retrieval_quality.py on next-cloudphone (recall@5 / MRR@10), with the stemming analyser:
max 1000 → 0.970 / 0.811, 1500 → 0.970 / 0.805, 2500 → 0.955 / 0.793 (earlier, before stemming:
without merging small sections (min 0) recall dropped from 0.955 to 0.909). 1500 keeps more
tables and code blocks whole at about the same quality.

Front matter (`---` YAML at the top) is parsed for `title`, `tags` and `aliases` (other names
of the page's subject, e.g. its Chinese names) and removed from the body; malformed front
matter is kept as plain text rather than failing the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

MAX_CHARS = 1500  # a chunk grows to at most this weighted size
MIN_CHARS = 200  # smaller sections merge into what follows under the same parent
CJK_WEIGHT = 2

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Emphasis marks, images and HTML; an underscore only when it is emphasis (at a word's edge), so
# identifiers in headings stay whole (`DEVICE_CREATION`, `user_events`).
_MD_NOISE = re.compile(r"[*`]+|(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])|!\[[^\]]*\]\([^)]*\)|<[^>]+>")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_LINK_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\*\*)?\[[^\]]+\]\([^)]*\)")
NAVIGATION_SHARE = 0.6  # a list block is navigation when this share of its lines are link items


@dataclass
class Chunk:
    heading: list[str]  # heading path, outermost first
    text: str
    ordinal: int = 0


@dataclass
class Document:
    title: str
    tags: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)


def size(text: str) -> int:
    """Weighted size: CJK characters count CJK_WEIGHT each."""
    return len(text) + (CJK_WEIGHT - 1) * len(_CJK.findall(text))


def clean_heading(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    return _MD_NOISE.sub("", text).strip()


def split_front_matter(text: str) -> tuple[dict[str, object], str]:
    if not text.startswith("---"):
        return {}, text
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return {}, text
    for i in range(1, min(len(lines), 200)):
        if lines[i].strip() in ("---", "..."):
            try:
                meta = yaml.safe_load("\n".join(lines[1:i]))
            except yaml.YAMLError:
                return {}, text
            if not isinstance(meta, dict):
                return {}, text
            return meta, "\n".join(lines[i + 1 :])
    return {}, text


def _strings(value: object) -> list[str]:
    """A front matter list (or a single value) as strings; nothing for a missing one."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _blocks(lines: list[str]) -> list[str]:
    """Group a section's lines into blocks: fenced code, tables, paragraphs/lists."""
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    in_table = False

    def flush() -> None:
        nonlocal current
        if current and any(line.strip() for line in current):
            blocks.append("\n".join(current).strip("\n"))
        current = []

    for line in lines:
        if fence is not None:
            current.append(line)
            if line.strip().startswith(fence):
                fence = None
                flush()
            continue
        m = _FENCE.match(line)
        if m:
            flush()
            fence = m.group(1)[0] * len(m.group(1))
            current.append(line)
            continue
        is_table = line.lstrip().startswith("|")
        if is_table != in_table:
            flush()
            in_table = is_table
        if not line.strip():
            if not in_table:
                flush()
            continue
        current.append(line)
    flush()
    return blocks


def _cut(block: str, limit: int) -> list[str]:
    """Cut an oversized block at line boundaries (tables and code keep their head line)."""
    lines = block.split("\n")
    head = lines[0] if lines[0].lstrip().startswith(("|", "```", "~~~")) else ""
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for line in lines:
        n = size(line) + 1
        if current and used + n > limit:
            parts.append("\n".join(current))
            current = [head] if head and line != head else []
            used = size(head) if current else 0
        if n > limit:  # one monstrous line: hard cut
            for start in range(0, len(line), limit // CJK_WEIGHT):
                parts.append(line[start : start + limit // CJK_WEIGHT])
            continue
        current.append(line)
        used += n
    if current:
        parts.append("\n".join(current))
    return parts


def _pack(blocks: list[str], limit: int) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    used = 0
    for block in blocks:
        n = size(block)
        if n > limit:
            if current:
                out.append("\n\n".join(current))
                current, used = [], 0
            out.extend(_cut(block, limit))
            continue
        if current and used + n + 2 > limit:
            out.append("\n\n".join(current))
            current, used = [], 0
        current.append(block)
        used += n + 2
    if current:
        out.append("\n\n".join(current))
    return out


def is_navigation(block: str) -> bool:
    """A list that is mostly links: a table of contents or a "Related" / "See also" list."""
    lines = [line for line in block.split("\n") if line.strip()]
    if len(lines) < 2:
        return False
    return sum(1 for line in lines if _LINK_ITEM.match(line)) >= NAVIGATION_SHARE * len(lines)


def parse(text: str, *, fallback_title: str, max_chars: int = MAX_CHARS, min_chars: int = MIN_CHARS) -> Document:
    """Split a markdown document into chunks with their heading paths.

    Navigation lists (tables of contents, "Related" link lists) are left out: they repeat the
    words of other sections and other pages, and outrank the passages they point to. A document
    that is nothing but navigation (an index page) keeps them.
    """
    doc = _parse(text, fallback_title=fallback_title, max_chars=max_chars, min_chars=min_chars, navigation=False)
    if not doc.chunks:
        doc = _parse(text, fallback_title=fallback_title, max_chars=max_chars, min_chars=min_chars, navigation=True)
    return doc


def _parse(text: str, *, fallback_title: str, max_chars: int, min_chars: int, navigation: bool) -> Document:
    meta, body = split_front_matter(text.replace("\r\n", "\n").replace("\r", "\n"))
    title = str(meta.get("title") or "").strip()
    tags = _strings(meta.get("tags"))
    aliases = _strings(meta.get("aliases"))

    # Sections: (heading path, lines)
    sections: list[tuple[list[str], list[str]]] = []
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    fence: str | None = None
    for line in body.split("\n"):
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            lines.append(line)
            continue
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)[0] * 3
            lines.append(line)
            continue
        h = _HEADING.match(line)
        if h:
            sections.append(([t for _, t in stack], lines))
            level = len(h.group(1))
            name = clean_heading(h.group(2))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, name))
            if not title and level == 1 and name:
                title = name
            lines = []
            continue
        lines.append(line)
    sections.append(([t for _, t in stack], lines))
    if not title:
        title = fallback_title

    doc = Document(title=title, tags=tags, aliases=aliases)
    pending: tuple[list[str], str] | None = None  # a tiny section waiting to merge forward
    for heading, section_lines in sections:
        blocks = _blocks(section_lines)
        if not navigation:
            blocks = [b for b in blocks if not is_navigation(b)]
        if not blocks:
            continue
        texts = _pack(blocks, max_chars)
        if pending is not None:
            p_heading, p_text = pending
            related = heading[: len(p_heading) - 1] == p_heading[:-1] or heading[: len(p_heading)] == p_heading
            if related and size(p_text) + size(texts[0]) + 2 <= max_chars:
                label = p_heading[-1] if p_heading and p_heading != heading[: len(p_heading)] else ""
                texts[0] = (f"**{label}**\n\n" if label else "") + p_text + "\n\n" + texts[0]
            else:
                doc.chunks.append(Chunk(p_heading, p_text))
            pending = None
        for i, chunk_text in enumerate(texts):
            if i == len(texts) - 1 and size(chunk_text) < min_chars:
                pending = (heading, chunk_text)
            else:
                doc.chunks.append(Chunk(heading, chunk_text))
    if pending is not None:
        doc.chunks.append(Chunk(*pending))
    for i, chunk in enumerate(doc.chunks):
        chunk.ordinal = i
    return doc
