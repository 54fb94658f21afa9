"""The digest's values, and the text helpers every stage shares. Pure: no Slack, no model, no store."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.i18n import DEFAULT_LANG, Lang

LINE_CHARS = 160  # one line per thread
THREADS_PER_TOPIC = 12
MAX_LISTED_THREADS = 150  # threads listed under topics; the rest are counted
MAX_ITEMS = 40  # decisions / open questions / gaps listed; the rest are counted
OTHER_TOPIC = "Other questions"

# -- values ----------------------------------------------------------------------------------
ThreadKey = tuple[str, str]  # (channel, thread_ts)


@dataclass
class ThreadItem:
    """One answered thread, listed once under its topic."""

    channel: str
    thread_ts: str
    topic: str
    line: str
    permalink: str | None = None
    kinds: list[str] = field(default_factory=list)
    answer_ids: list[int] = field(default_factory=list)
    last_at: float = 0.0


@dataclass
class Item:
    """A line in the decisions / open questions sections, pointing at its thread."""

    text: str
    permalink: str | None = None
    note: str = ""
    key: ThreadKey | None = None


@dataclass
class GapItem:
    kind: str  # "gap" | "conflict"
    description: str
    files: list[str]
    permalink: str | None = None
    key: ThreadKey | None = None


@dataclass
class DocCount:
    label: str
    url: str | None
    count: int


@dataclass
class Numbers:
    questions: int = 0
    answered: int = 0
    clarifications: int = 0
    failures: int = 0
    threads: int = 0
    median_latency_ms: float | None = None
    thumbs_up: int = 0
    thumbs_down: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    cost_estimated: bool = False


@dataclass
class DigestData:
    """Everything a digest shows, already privacy-filtered. Pure data: no Slack, no model."""

    since: datetime
    until: datetime
    topics: dict[str, list[ThreadItem]] = field(default_factory=dict)
    decisions: list[Item] = field(default_factory=list)
    open_questions: list[Item] = field(default_factory=list)
    gaps: list[GapItem] = field(default_factory=list)
    top_docs: list[DocCount] = field(default_factory=list)
    numbers: Numbers = field(default_factory=Numbers)
    skipped: Counter[str] = field(default_factory=Counter)
    private_left_out: int = 0  # threads from private channels / DMs not shown (a count only)
    summary: str | None = None
    summary_failed: bool = False
    lang: Lang = DEFAULT_LANG  # ARCHBOT_LANGUAGE: the digest's headings and labels

    @property
    def empty(self) -> bool:
        return self.numbers.questions == 0

    def threads(self) -> list[ThreadItem]:
        return [t for items in self.topics.values() for t in items]


# -- text helpers ----------------------------------------------------------------------------
_WS = re.compile(r"\s+")


def plain_text(text: str, names: dict[str, str] | None = None) -> str:
    """Slack markup → plain text (mentions named, never pinging anyone), whitespace collapsed."""
    from bot.slack.context import clean_text

    return _WS.sub(" ", clean_text(text or "", bot_user_id=None, names=names)).strip()


def one_line(text: str, limit: int = LINE_CHARS) -> str:
    """The first non-empty line, shortened to `limit` characters."""
    for raw in (text or "").splitlines():
        line = _WS.sub(" ", raw).strip().lstrip("#>*-• ").strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return ""


def doc_label(source: str, path: str) -> str:
    return f"knowledge/{path}" if source == "knowledge" else path


def _topic_from_path(path: str) -> str:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    words = re.sub(r"[-_]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else OTHER_TOPIC


def format_range(since: datetime, until: datetime, lang: Lang = DEFAULT_LANG) -> str:
    """`3 Mar – 9 Mar 2025` (the end is exclusive, so the last day shown is the day before it);
    in Chinese `2025年3月3日 – 3月9日`."""
    last = until - timedelta(seconds=1)
    if last < since:
        last = since
    if lang == "zh":
        first = f"{since.year}年{since.month}月{since.day}日"
        if since.date() == last.date():
            return first
        end = f"{last.month}月{last.day}日" if since.year == last.year else f"{last.year}年{last.month}月{last.day}日"
        return f"{first} – {end}"
    if since.year != last.year:
        return f"{since:%-d %b %Y} – {last:%-d %b %Y}"
    if since.date() == last.date():
        return f"{since:%-d %b %Y}"
    return f"{since:%-d %b} – {last:%-d %b %Y}"


def listing(topics: dict[str, list[ThreadItem]]) -> tuple[list[tuple[str, list[ThreadItem], int]], int, int]:
    """What the digest lists: (topic, threads shown, threads not shown) for each topic within
    the MAX_LISTED_THREADS budget, then how many threads and topics were left out entirely."""
    shown: list[tuple[str, list[ThreadItem], int]] = []
    budget = MAX_LISTED_THREADS
    left_threads = left_topics = 0
    for topic, items in topics.items():
        if budget <= 0:
            left_threads += len(items)
            left_topics += 1
            continue
        take = items[: min(THREADS_PER_TOPIC, budget)]
        budget -= len(take)
        shown.append((topic, take, len(items) - len(take)))
    return shown, left_threads, left_topics
