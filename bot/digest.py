"""The weekly architecture digest: what the team asked, decided, left open, and what the docs lack.

Three stages, each testable alone:

1. `collect_digest()` reads the answers stored in `[since, until)` and turns them into a
   `DigestData` value. This is where privacy is enforced, before anything else sees the
   data: only threads from public channels (`channel_type == "channel"`) are kept, plus the
   channels listed in `ARCHBOT_DIGEST_PRIVATE_CHANNELS`. Private channels, group DMs and DMs
   never reach the rendered digest or the model request. With a Slack client, every kept
   channel is double-checked with `conversations.info` (a channel that turned private is
   dropped; one the bot left, or a failing call, is skipped and counted) and each thread gets
   its permalink (`chat.getPermalink`; a deleted thread or a failing call: skipped and counted).
   A channel whose stored type is unknown (e.g. a slash command's) is only kept once
   `conversations.info` says it is public.
2. `write_summary()` asks the model, once, for a short summary of that already-filtered data
   (only when a key is configured). Any failure gives `None`, and the digest goes out plain.
3. `render_markdown()` (the CLI) and `render_slack_messages()` (the post) are pure. Slack
   limits are respected: section text ≤ 3000 characters, ≤ 50 blocks and a short `text`
   fallback per message; a digest too long for one message becomes a parent message (title,
   summary, numbers) with the detailed sections as replies in its thread.

`post_scheduled_digest()` runs the three stages and posts; `DigestScheduler` (bot/schedule.py,
re-exported here) decides when. `digest_command()` is `archbot digest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.schedule import DigestScheduler, Period
from bot.store import Store, StoredAnswer

__all__ = [
    "DigestData",
    "DigestScheduler",
    "Period",
    "collect_digest",
    "digest_command",
    "post_digest",
    "post_scheduled_digest",
    "render_markdown",
    "render_slack_messages",
    "write_summary",
]

log = logging.getLogger(__name__)

DEFAULT_DAYS = 7
SECTION_LIMIT = 3000  # Slack: a section block's text
MAX_BLOCKS = 50  # Slack: blocks per message
TEXT_LIMIT = 40_000  # Slack: `text` per message
MESSAGE_CHARS = 11_000  # our own cap per message, so a digest reads without "show more" walls
FALLBACK_CHARS = 300  # notification text
LINE_CHARS = 160  # one line per thread
TOPIC_CHARS = 60
THREADS_PER_TOPIC = 12
MAX_LISTED_THREADS = 150  # threads listed under topics; the rest are counted
MAX_ITEMS = 40  # decisions / open questions / gaps listed; the rest are counted
TOP_DOCS = 5
SUMMARY_CHARS = 2500
SUMMARY_MAX_TOKENS = 700
SLACK_CONCURRENCY = 6  # permalink / conversations.info calls in flight
PUBLIC_TYPES = {"channel"}
PRIVATE_TYPES = {"group", "mpim", "im"}
OTHER_TOPIC = "Other questions"
DELETED_ERRORS = {"message_not_found", "thread_not_found"}
GONE_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "access_denied"}
UNCHECKABLE_ERRORS = {"not_allowed_token_type", "no_permission"}

SKIP_LABELS: dict[str, tuple[str, str]] = {  # reason -> (one, several)
    "deleted": ("deleted thread", "deleted threads"),
    "channel_left": ("thread in a channel the bot left", "threads in channels the bot left"),
    "channel_check_failed": ("thread whose channel check failed", "threads whose channel check failed"),
    "unverified": ("thread from a channel not verified as public", "threads from channels not verified as public"),
    "permalink_failed": ("thread whose permalink failed", "threads whose permalink failed"),
}

SUMMARY_SYSTEM = """\
You write the opening of a weekly digest of one software team's architecture conversations \
with their assistant. You receive the week's material: questions grouped by topic, decisions, \
open questions, gaps and contradictions found in the team's documentation, the most-cited \
documents and a few figures.

Write 3 to 6 short markdown bullet points for the team: the main themes of the week, the \
decisions worth knowing, what is still open, and the documentation work that would help most. \
Use only the material given. Never invent threads, decisions, people, documents or numbers. \
No heading, no links, no greeting, no closing line."""


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

    @property
    def empty(self) -> bool:
        return self.numbers.questions == 0

    def threads(self) -> list[ThreadItem]:
        return [t for items in self.topics.values() for t in items]


# -- text helpers ----------------------------------------------------------------------------
_WS = re.compile(r"\s+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#])")


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


def md_escape(text: str) -> str:
    """Escape user text so it shows literally in markdown (and, converted, in Slack mrkdwn)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_link(label: str, url: str | None) -> str:
    if not url:
        return label
    from bot.slack.render import citation_url
    from bot.types import Citation

    safe = citation_url(Citation(path="", source="", url=url)) or url
    return f"[{label}]({safe})"


def doc_label(source: str, path: str) -> str:
    return f"knowledge/{path}" if source == "knowledge" else path


def _topic_from_path(path: str) -> str:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    words = re.sub(r"[-_]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else OTHER_TOPIC


def format_range(since: datetime, until: datetime) -> str:
    """`3 Mar – 9 Mar 2025` (the end is exclusive, so the last day shown is the day before it)."""
    last = until - timedelta(seconds=1)
    if last < since:
        last = since
    if since.year != last.year:
        return f"{since:%-d %b %Y} – {last:%-d %b %Y}"
    if since.date() == last.date():
        return f"{since:%-d %b %Y}"
    return f"{since:%-d %b} – {last:%-d %b %Y}"


# -- stage 1: collect ------------------------------------------------------------------------
def _error(exc: SlackApiError) -> str:
    try:
        return str(exc.response.get("error") or "unknown")
    except Exception:
        return "unknown"


async def _check_channel(client: AsyncWebClient, channel: str) -> str:
    """'public', 'private', 'left', 'failed' or 'unknown' (the check itself is not possible)."""
    try:
        resp = await client.conversations_info(channel=channel)
    except SlackApiError as exc:
        error = _error(exc)
        if error == "missing_scope":
            # channels:read answers for every public channel, so a scope error naming another
            # scope (groups:read, im:read, mpim:read) means the conversation is not public.
            needed = str(exc.response.get("needed") or "")
            return "unknown" if "channels:read" in needed else "private"
        if error in UNCHECKABLE_ERRORS:
            return "unknown"
        log.info("digest: channel check failed", extra={"channel": channel, "error": error})
        return "left" if error in GONE_ERRORS else "failed"
    except Exception as exc:  # network trouble: treat like a failing call
        log.info("digest: channel check failed", extra={"channel": channel, "error": type(exc).__name__})
        return "failed"
    info = resp.get("channel") or {}
    if info.get("is_im") or info.get("is_mpim") or info.get("is_private") or info.get("is_group"):
        return "private"
    if info.get("is_member") is False:
        return "left"
    return "public"


async def _permalink(client: AsyncWebClient, channel: str, ts: str) -> tuple[str | None, str | None]:
    """(permalink, None) or (None, skip reason)."""
    try:
        resp = await client.chat_getPermalink(channel=channel, message_ts=ts)
    except SlackApiError as exc:
        error = _error(exc)
        log.info("digest: permalink failed", extra={"channel": channel, "ts": ts, "error": error})
        if error in DELETED_ERRORS:
            return None, "deleted"
        if error in GONE_ERRORS:
            return None, "channel_left"
        return None, "permalink_failed"
    except Exception as exc:
        log.info("digest: permalink failed", extra={"channel": channel, "ts": ts, "error": type(exc).__name__})
        return None, "permalink_failed"
    link = resp.get("permalink")
    return (str(link), None) if link else (None, "permalink_failed")


async def _visible_channels(
    answers: list[StoredAnswer], settings: Settings, slack: AsyncWebClient | None, data: DigestData
) -> set[str]:
    """The channels whose threads may appear; counts the others (privacy first, then checks)."""
    opt_in = set(settings.digest_channels_opt_in)
    threads_in: dict[str, set[str]] = {}
    types_in: dict[str, set[str]] = {}
    for a in answers:
        threads_in.setdefault(a.channel, set()).add(a.thread_ts)
        types_in.setdefault(a.channel, set()).add(a.channel_type or "")

    candidates: dict[str, str] = {}  # channel -> "public" | "opt_in" | "unknown"
    for channel, types in types_in.items():
        if channel in opt_in:
            candidates[channel] = "opt_in"
        elif types & PRIVATE_TYPES:
            data.private_left_out += len(threads_in[channel])
        elif types <= PUBLIC_TYPES:
            candidates[channel] = "public"
        else:
            candidates[channel] = "unknown"

    visible: set[str] = set()
    if slack is None:
        for channel, kind in candidates.items():
            if kind == "unknown":
                data.skipped["unverified"] += len(threads_in[channel])
            else:
                visible.add(channel)
        return visible

    limit = asyncio.Semaphore(SLACK_CONCURRENCY)

    async def check(channel: str) -> tuple[str, str]:
        async with limit:
            return channel, await _check_channel(slack, channel)

    for channel, verdict in await asyncio.gather(*(check(c) for c in candidates)):
        n = len(threads_in[channel])
        stored = candidates[channel]
        if verdict == "public" or (verdict == "private" and stored == "opt_in"):
            visible.add(channel)
        elif verdict == "private":
            data.private_left_out += n
        elif verdict == "unknown":  # the check is impossible (scope): trust the stored type
            if stored == "unknown":
                data.skipped["unverified"] += n
            else:
                visible.add(channel)
        elif verdict == "left":
            data.skipped["channel_left"] += n
        else:
            data.skipped["channel_check_failed"] += n
    return visible


def _names(store: Store, answers: list[StoredAnswer]) -> dict[str, str]:
    """Cached display names for the users mentioned in these questions (no Slack call)."""
    ids: set[str] = set()
    for a in answers:
        ids.update(re.findall(r"<@([UW][A-Z0-9]+)", a.question or ""))
    out: dict[str, str] = {}
    for uid in ids:
        name = store.user_name(uid, max_age=float("inf"))
        if name:
            out[uid] = name
    return out


def _cost(rows: list[dict[str, Any]]) -> tuple[int, float, bool]:
    from bot.stats import estimate_cost

    tokens, cost, estimated = 0, 0.0, False
    for r in rows:
        parts = [r.get(k) or 0 for k in ("input_tokens", "output_tokens", "cache_read", "cache_write")]
        tokens += sum(parts)
        if r.get("cost_usd"):
            cost += float(r["cost_usd"])
        elif any(parts):
            cost += estimate_cost(
                r.get("model"), input_=parts[0], output=parts[1], cache_read=parts[2], cache_write=parts[3]
            )
            estimated = True
    return tokens, cost, estimated


def _select(
    threads: dict[ThreadKey, ThreadItem],
    by_thread: dict[ThreadKey, list[StoredAnswer]],
    *,
    sources: dict[int, list[dict[str, Any]]],
    gaps: dict[int, list[dict[str, Any]]],
    feedback: dict[int, dict[str, int]],
    last_in_thread: dict[ThreadKey, float],
    names: dict[str, str],
) -> tuple[dict[str, list[ThreadItem]], list[Item], list[Item], list[GapItem]]:
    """Group the threads by topic and pick the decisions, open questions and gaps (no I/O)."""
    topics: dict[str, list[ThreadItem]] = {}
    display: dict[str, str] = {}
    for t in threads.values():
        topics.setdefault(display.setdefault(t.topic.casefold(), t.topic), []).append(t)
    topics = dict(sorted(topics.items(), key=lambda kv: (kv[0] == OTHER_TOPIC, -len(kv[1]), kv[0].casefold())))

    decisions: list[Item] = []
    open_questions: list[Item] = []
    gap_items: list[GapItem] = []
    seen: set[tuple[ThreadKey, str]] = set()
    seen_gaps: set[tuple[str, str]] = set()
    for key, t in threads.items():
        items = by_thread[key]
        for a in items:
            decision = one_line(plain_text(a.decision or "", names), 240)
            if a.kind == "review":
                text, note = decision or f"Reviewed: {t.line}", "review"
            elif decision:
                text, note = decision, ""
            else:
                continue
            if (key, text.casefold()) not in seen:
                seen.add((key, text.casefold()))
                decisions.append(Item(text=text, note=note, key=key))
        last = items[-1]
        if last.kind == "clarify" and last_in_thread.get(key, 0.0) <= last.created_at:
            open_questions.append(Item(text=t.line, note="waiting for details", key=key))
        elif any(feedback.get(a.id, {}).get("down", 0) for a in items):
            open_questions.append(Item(text=t.line, note="answer marked 👎", key=key))
        for a in items:
            files = sorted({doc_label(x["source"] or "", x["path"]) for x in sources.get(a.id, [])})
            for g in gaps.get(a.id, []):
                description = one_line(plain_text(g["description"] or "", names), 300)
                kind = "conflict" if g["kind"] == "conflict" else "gap"
                if description and (kind, description.casefold()) not in seen_gaps:
                    seen_gaps.add((kind, description.casefold()))
                    gap_items.append(GapItem(kind=kind, description=description, files=files, key=key))
    gap_items.sort(key=lambda g: g.kind != "conflict")
    return topics, decisions, open_questions, gap_items


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


def _shown_keys(
    topics: dict[str, list[ThreadItem]], decisions: list[Item], open_questions: list[Item], gaps: list[GapItem]
) -> list[ThreadKey]:
    """The threads the rendered digest links to (what `build_sections` will show)."""
    shown, _, _ = listing(topics)
    keys: list[ThreadKey] = [(t.channel, t.thread_ts) for _, items, _ in shown for t in items]
    for group in (decisions, open_questions, gaps):
        keys.extend(i.key for i in group[:MAX_ITEMS] if i.key is not None)
    return list(dict.fromkeys(keys))


async def collect_digest(
    store: Store,
    settings: Settings,
    *,
    since: datetime,
    until: datetime,
    slack: AsyncWebClient | None = None,
) -> DigestData:
    """The digest's content for answers stored in [since, until), privacy-filtered.

    Without `slack` (an offline dry run) threads are listed without links, and channels of
    unknown type are left out. With it, permalinks are fetched for the threads shown only.
    """
    zone = settings.zone
    data = DigestData(since=since.astimezone(zone), until=until.astimezone(zone))
    answers = store.answers_since(since.timestamp(), until.timestamp())
    visible = await _visible_channels(answers, settings, slack, data)
    answers = [a for a in answers if a.channel in visible]
    if not answers:
        return data
    names = _names(store, answers)
    ids = [a.id for a in answers]
    sources = store.sources_for(ids)
    gaps = store.gaps_for(ids)
    feedback = _feedback_for(store, ids)
    last_in_thread = {
        (r["channel"], r["thread_ts"]): r["last_at"]
        for r in store.query(
            "SELECT channel, thread_ts, MAX(created_at) AS last_at FROM answers WHERE created_at >= ?"
            " GROUP BY channel, thread_ts",
            (since.timestamp(),),
        )
    }

    by_thread: dict[ThreadKey, list[StoredAnswer]] = {}
    for a in answers:
        by_thread.setdefault((a.channel, a.thread_ts), []).append(a)
    threads: dict[ThreadKey, ThreadItem] = {}
    for key, items in by_thread.items():
        if all(a.kind == "failure" for a in items):
            continue  # never answered: counted in the numbers, not listed
        topic = next((one_line(a.topic, TOPIC_CHARS) for a in reversed(items) if a.topic and a.topic.strip()), "")
        if not topic:
            cited = [x for a in items for x in sources.get(a.id, [])]
            topic = _topic_from_path(cited[0]["path"]) if cited else OTHER_TOPIC
        question = one_line(plain_text(items[0].question, names)) or one_line(plain_text(items[0].text, names))
        threads[key] = ThreadItem(
            channel=key[0],
            thread_ts=key[1],
            topic=topic,
            line=question or "(no text)",
            kinds=[a.kind for a in items],
            answer_ids=[a.id for a in items],
            last_at=items[-1].created_at,
        )

    def select() -> tuple[dict[str, list[ThreadItem]], list[Item], list[Item], list[GapItem]]:
        return _select(
            threads,
            by_thread,
            sources=sources,
            gaps=gaps,
            feedback=feedback,
            last_in_thread=last_in_thread,
            names=names,
        )

    topics, decisions, open_questions, gap_items = select()
    if slack is not None:
        # Link what is shown; a thread that cannot be linked (deleted, channel gone, failing call)
        # is skipped and counted, and the selection is redone without it.
        limit = asyncio.Semaphore(SLACK_CONCURRENCY)
        links: dict[ThreadKey, str] = {}

        async def link(key: ThreadKey) -> tuple[ThreadKey, str | None, str | None]:
            async with limit:
                return (key, *await _permalink(slack, key[0], key[1]))

        while True:
            missing = [k for k in _shown_keys(topics, decisions, open_questions, gap_items) if k not in links]
            if not missing:
                break
            for key, permalink, reason in await asyncio.gather(*(link(k) for k in missing)):
                if permalink is None:
                    data.skipped[reason or "permalink_failed"] += 1
                    del threads[key]
                else:
                    links[key] = permalink
            topics, decisions, open_questions, gap_items = select()
        for key, t in threads.items():
            t.permalink = links.get(key)
        for item in decisions + open_questions:
            item.permalink = links.get(item.key) if item.key else None
        for gap in gap_items:
            gap.permalink = links.get(gap.key) if gap.key else None

    data.topics, data.decisions, data.open_questions, data.gaps = topics, decisions, open_questions, gap_items

    # Most-cited docs (each answer counts a doc once).
    counts: Counter[tuple[str, str]] = Counter()
    urls: dict[tuple[str, str], str] = {}
    for a in answers:
        for x in sources.get(a.id, []):
            doc = (x["source"] or "", x["path"])
            counts[doc] += 1
            if x.get("url") and doc not in urls:
                urls[doc] = x["url"]
    data.top_docs = [
        DocCount(label=doc_label(*doc), url=urls.get(doc), count=n)
        for doc, n in sorted(counts.items(), key=lambda kv: (-kv[1], doc_label(*kv[0])))[:TOP_DOCS]
    ]

    # The week in numbers (every visible answer, linked or not).
    n = data.numbers
    n.questions = len(answers)
    n.threads = len(by_thread)
    n.answered = sum(a.kind in ("answer", "review", "retrieval_only") for a in answers)
    n.clarifications = sum(a.kind == "clarify" for a in answers)
    n.failures = sum(a.kind == "failure" for a in answers)
    latencies = [a.latency_ms for a in answers if a.latency_ms is not None and a.kind != "failure"]
    n.median_latency_ms = statistics.median(latencies) if latencies else None
    n.thumbs_up = sum(f.get("up", 0) for f in feedback.values())
    n.thumbs_down = sum(f.get("down", 0) for f in feedback.values())
    marks = ",".join("?" * len(ids))
    rows = store.query(
        "SELECT model, input_tokens, output_tokens, cache_read_input_tokens AS cache_read,"
        f" cache_creation_input_tokens AS cache_write, cost_usd FROM answers WHERE id IN ({marks})",
        ids,
    )
    n.tokens, n.cost_usd, n.cost_estimated = _cost(rows)
    return data


def _feedback_for(store: Store, answer_ids: list[int]) -> dict[int, dict[str, int]]:
    if not answer_ids:
        return {}
    marks = ",".join("?" * len(answer_ids))
    out: dict[int, dict[str, int]] = {}
    for r in store.query(
        f"SELECT answer_id, value, COUNT(*) AS n FROM feedback WHERE answer_id IN ({marks}) GROUP BY answer_id, value",
        answer_ids,
    ):
        out.setdefault(r["answer_id"], {})[r["value"]] = r["n"]
    return out


# -- stage 2: the model's summary ------------------------------------------------------------
def build_summary_request(data: DigestData) -> str:
    """The material the model summarises: the digest's own (filtered) data, without links."""
    lines = [f"Period: {format_range(data.since, data.until)}", "", "Questions by topic:"]
    shown, left_threads, left_topics = listing(data.topics)
    for topic, items, more in shown:
        lines.append(f"- {topic} ({len(items) + more})")
        lines.extend(f"  - {t.line}" for t in items)
    if left_threads:
        lines.append(f"- {left_threads} more threads in {left_topics} other topics")
    if data.decisions:
        lines += ["", "Decisions:"]
        lines += [f"- {d.text}" + (f" ({d.note})" if d.note else "") for d in data.decisions[:MAX_ITEMS]]
    if data.open_questions:
        lines += ["", "Open questions:"] + [f"- {o.text} ({o.note})" for o in data.open_questions[:MAX_ITEMS]]
    if data.gaps:
        lines += ["", "Documentation gaps and contradictions:"]
        for g in data.gaps[:MAX_ITEMS]:
            files = ", ".join(g.files) if g.files else "no document covers it"
            lines.append(f"- [{g.kind}] {g.description} (files: {files})")
    if data.top_docs:
        lines += ["", "Most-cited documents:"] + [f"- {d.label} ({d.count})" for d in data.top_docs]
    n = data.numbers
    lines += [
        "",
        f"Figures: {n.questions} questions in {n.threads} threads, {n.answered} answered, "
        f"{n.clarifications} clarifications asked, {n.failures} failures, "
        f"{n.thumbs_up} thumbs up, {n.thumbs_down} thumbs down.",
    ]
    return "\n".join(lines)


async def write_summary(client: Any, settings: Settings, data: DigestData) -> str | None:
    """One model request: a few bullet points from the filtered data. None on any failure."""
    if data.empty or not data.threads():
        return None
    try:
        message = await client.messages.create(
            model=settings.model,
            max_tokens=SUMMARY_MAX_TOKENS,
            system=SUMMARY_SYSTEM,
            messages=[{"role": "user", "content": build_summary_request(data)}],
        )
        text = "".join(getattr(b, "text", "") for b in message.content if getattr(b, "type", "") == "text").strip()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any model trouble: the plain digest goes out
        log.warning("digest summary failed; posting the plain digest", extra={"error": type(exc).__name__})
        data.summary_failed = True
        return None
    if not text:
        data.summary_failed = True
        return None
    if len(text) > SUMMARY_CHARS:
        cut = text.rfind("\n", 0, SUMMARY_CHARS)
        text = text[: cut if cut > 0 else SUMMARY_CHARS].rstrip() + "\n…"
    return text


# -- stage 3: render -------------------------------------------------------------------------
@dataclass
class Section:
    title: str
    lines: list[str]  # markdown, one item per line
    detail: bool = True  # False: stays in the parent message when the digest is split


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _more(total: int) -> list[str]:
    return [f"- …and {total - MAX_ITEMS} more"] if total > MAX_ITEMS else []


def build_sections(data: DigestData) -> list[Section]:
    """The digest as titled markdown sections (shared by the markdown print and the Slack post)."""
    sections: list[Section] = []
    if data.summary:
        sections.append(Section("This week", data.summary.splitlines(), detail=False))
    n = data.numbers
    latency = (
        "–"
        if n.median_latency_ms is None
        else (f"{n.median_latency_ms / 1000:.1f} s" if n.median_latency_ms >= 1000 else f"{n.median_latency_ms:.0f} ms")
    )
    cost = f"{'~' if n.cost_estimated else ''}${n.cost_usd:.2f}"
    sections.append(
        Section(
            "The week in numbers",
            [
                f"- Questions: {n.questions} in {_count(n.threads, 'thread')} ({n.answered} answered, "
                f"{_count(n.clarifications, 'clarification')}, {n.failures} failed)",
                f"- Median answer time: {latency}",
                f"- Feedback: 👍 {n.thumbs_up} · 👎 {n.thumbs_down}",
                f"- Tokens: {n.tokens:,} · cost {cost}",
            ],
            detail=False,
        )
    )
    if data.topics:
        lines: list[str] = []
        shown, left_threads, left_topics = listing(data.topics)
        for topic, items, more in shown:
            if lines:
                lines.append("")  # a blank line, so the heading does not continue the list above
            lines.append(f"**{md_escape(topic)}** ({len(items) + more})")
            lines.extend(f"- {_md_link(md_escape(t.line), t.permalink)}" for t in items)
            if more:
                lines.append(f"- …and {more} more")
        if left_threads:
            lines += ["", f"…and {_count(left_threads, 'thread')} in {_count(left_topics, 'other topic')}."]
        sections.append(Section("Threads answered", lines))
    if data.decisions:
        lines = [
            f"- {_md_link(md_escape(d.text), d.permalink)}" + (f" _({d.note})_" if d.note else "")
            for d in data.decisions[:MAX_ITEMS]
        ]
        sections.append(Section("Decisions", lines + _more(len(data.decisions))))
    if data.open_questions:
        lines = [f"- {_md_link(md_escape(o.text), o.permalink)} _({o.note})_" for o in data.open_questions[:MAX_ITEMS]]
        sections.append(Section("Open questions", lines + _more(len(data.open_questions))))
    if data.gaps:
        lines = []
        for g in data.gaps[:MAX_ITEMS]:
            label = "Docs disagree" if g.kind == "conflict" else "Not in the docs"
            files = ", ".join(f"`{f}`" for f in g.files) if g.files else "no document covers this yet"
            lines.append(f"- **{label}:** {_md_link(md_escape(g.description), g.permalink)} (fix: {files})")
        sections.append(Section("Knowledge gaps", lines + _more(len(data.gaps))))
    if data.top_docs:
        sections.append(
            Section(
                "Most-cited docs",
                [f"- {_md_link(md_escape(d.label), d.url)} ({d.count})" for d in data.top_docs],
            )
        )
    return sections


def build_footer(data: DigestData) -> str:
    parts: list[str] = []
    if data.skipped:
        skipped = ", ".join(
            f"{n} {SKIP_LABELS.get(reason, (reason, reason))[0 if n == 1 else 1]}"
            for reason, n in sorted(data.skipped.items())
        )
        parts.append(f"Skipped: {skipped}.")
    if data.private_left_out:
        parts.append(f"{data.private_left_out} private or direct-message thread(s) left out.")
    if data.summary:
        parts.append("Summary written by Claude from the threads listed.")
    elif data.summary_failed:
        parts.append("Plain digest: the model was not available.")
    return " ".join(parts)


def title(data: DigestData) -> str:
    return f"Architecture digest · {format_range(data.since, data.until)}"


def render_markdown(data: DigestData) -> str:
    """The digest as one markdown document (for `archbot digest --dry-run`)."""
    out = [f"# {title(data)}", ""]
    if data.empty:
        out += ["No architecture questions in this period.", ""]
    for s in build_sections(data):
        out += [f"## {s.title}", "", *s.lines, ""]
    footer = build_footer(data)
    if footer:
        out += ["---", f"_{footer}_", ""]
    return "\n".join(out).rstrip() + "\n"


@dataclass
class SlackMessage:
    text: str
    blocks: list[dict[str, Any]]


def _chunks(mrkdwn: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Split on line boundaries into pieces of at most `limit` characters."""
    pieces: list[str] = []
    current = ""
    for line in mrkdwn.split("\n"):
        while len(line) > limit:  # a single overlong line: cut it
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[: limit - 1] + "…")
            line = ""
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            pieces.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        pieces.append(current)
    return [p for p in pieces if p.strip()]


_GROUP_HEADING = re.compile(r"^(\*[^\n]+\* \(\d+\))\n\n", re.MULTILINE)


def _section_blocks(section: Section) -> list[dict[str, Any]]:
    from bot.slack.render import to_mrkdwn

    body = to_mrkdwn("\n".join(section.lines)).strip("\n")
    body = _GROUP_HEADING.sub(r"\1\n", body)  # a topic's heading sits right above its threads
    text = f"*{section.title}*\n{body}"
    return [{"type": "section", "text": {"type": "mrkdwn", "text": piece}} for piece in _chunks(text)]


def _size(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for b in blocks:
        text = b.get("text")
        if isinstance(text, dict):
            total += len(text.get("text", ""))
        for element in b.get("elements", []) or []:
            total += len(element.get("text", "")) if isinstance(element, dict) else 0
    return total


def _fallback(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= FALLBACK_CHARS else text[: FALLBACK_CHARS - 1] + "…"


def render_slack_messages(data: DigestData) -> list[SlackMessage]:
    """The digest as Slack messages: one when it fits, else a parent and its thread replies."""
    head = title(data)
    header: dict[str, Any] = {"type": "header", "text": {"type": "plain_text", "text": head[:150], "emoji": True}}
    sections = build_sections(data)
    footer_text = build_footer(data)
    footer: list[dict[str, Any]] = (
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": footer_text[:3000]}]}] if footer_text else []
    )
    empty: list[dict[str, Any]] = (
        [{"type": "section", "text": {"type": "mrkdwn", "text": "No architecture questions in this period."}}]
        if data.empty
        else []
    )
    n = data.numbers
    summary_line = f"{head}: {n.questions} questions, {len(data.gaps)} knowledge gaps"

    every: list[dict[str, Any]] = [header, *empty]
    for s in sections:
        every += _section_blocks(s)
    every += footer
    if len(every) <= MAX_BLOCKS and _size(every) <= MESSAGE_CHARS:
        return [SlackMessage(text=_fallback(summary_line), blocks=every)]

    parent: list[dict[str, Any]] = [header, *empty]
    for s in sections:
        if not s.detail:
            parent += _section_blocks(s)
    parent.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "The details are in the thread."}]})
    parent += footer
    messages = [SlackMessage(text=_fallback(summary_line), blocks=parent[:MAX_BLOCKS])]
    current: list[dict[str, Any]] = []
    for s in sections:
        if not s.detail:
            continue
        for block in _section_blocks(s):
            if current and (len(current) + 1 > MAX_BLOCKS or _size(current) + _size([block]) > MESSAGE_CHARS):
                messages.append(SlackMessage(text="", blocks=current))
                current = []
            current.append(block)
    if current:
        messages.append(SlackMessage(text="", blocks=current))
    total = len(messages) - 1
    for i, m in enumerate(messages[1:], start=1):
        m.text = _fallback(f"{head} (part {i} of {total})")
    return messages


# -- posting ---------------------------------------------------------------------------------
async def post_digest(
    client: AsyncWebClient,
    *,
    channel: str,
    messages: list[SlackMessage],
    on_parent: Callable[[str], None] | None = None,
) -> str:
    """Post the parent message and its thread replies; returns the parent's ts.

    Raises SlackPostError when the parent cannot be posted. `on_parent(ts)` runs as soon as the
    parent is up (the scheduler records the period as posted there, so a shutdown while the
    replies go out never leads to a second digest). A reply that fails is logged and left out.
    """
    from bot.errors import SlackPostError
    from bot.slack.post import post_message

    parent = messages[0]
    ts = await post_message(client, channel=channel, text=parent.text, blocks=parent.blocks)
    if on_parent is not None:
        on_parent(ts)
    for part in messages[1:]:
        try:
            await post_message(client, channel=channel, text=part.text, blocks=part.blocks, thread_ts=ts)
        except SlackPostError as exc:
            log.warning("digest: a thread reply failed", extra={"channel": channel, "error": exc.error})
    return ts


async def build_digest(
    settings: Settings,
    store: Store,
    slack: AsyncWebClient | None,
    anthropic_client: Any,
    *,
    since: datetime,
    until: datetime,
) -> DigestData:
    """Collect, then (with a model) summarise."""
    data = await collect_digest(store, settings, since=since, until=until, slack=slack)
    if not (settings.has_model or anthropic_client is not None):
        return data
    client = anthropic_client
    if client is None:
        try:
            from bot.architect import build_anthropic_client

            client = build_anthropic_client(settings)
        except Exception as exc:
            log.warning("digest: no model client", extra={"error": type(exc).__name__})
            data.summary_failed = True
            return data
    try:
        data.summary = await write_summary(client, settings, data)
    finally:
        if anthropic_client is None:  # ours: close its connection pool
            with contextlib.suppress(Exception):
                await client.close()
    return data


async def post_scheduled_digest(
    settings: Settings,
    store: Store,
    slack: AsyncWebClient,
    anthropic_client: Any,
    *,
    channel: str,
    since: datetime,
    until: datetime,
    on_parent: Callable[[str], None] | None = None,
) -> str:
    """Build the digest for [since, until) and post it to `channel`; returns the parent ts."""
    data = await build_digest(settings, store, slack, anthropic_client, since=since, until=until)
    messages = render_slack_messages(data)
    ts = await post_digest(slack, channel=channel, messages=messages, on_parent=on_parent)
    log.info(
        "digest built",
        extra={
            "channel": channel,
            "questions": data.numbers.questions,
            "messages": len(messages),
            "skipped": sum(data.skipped.values()),
            "summary": data.summary is not None,
        },
    )
    return ts


# -- the CLI ---------------------------------------------------------------------------------
def _config_error(variable: str, problem: str) -> int:
    print(f"archbot: configuration error: {variable}: {problem}", file=sys.stderr)
    return 2


def resolve_window(
    settings: Settings, since: datetime | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[since, now): a naive `--since` date is read in ARCHBOT_TZ; the default is 7 days back."""
    zone = settings.zone
    until = (now or datetime.now(UTC)).astimezone(zone)
    if since is None:
        return until - timedelta(days=DEFAULT_DAYS), until
    start = since.replace(tzinfo=zone) if since.tzinfo is None else since.astimezone(zone)
    return start, until


def digest_command(settings: Settings, *, post: bool, since: datetime | None) -> int:
    """`archbot digest`: print the digest as markdown (default) or post it to ARCHBOT_DIGEST_CHANNEL."""
    if post and not settings.digest_channel:
        return _config_error("ARCHBOT_DIGEST_CHANNEL", "is not set; `archbot digest --post` needs a channel id")
    if post and settings.slack_bot_token is None:
        return _config_error("SLACK_BOT_TOKEN", "is required for `archbot digest --post` (a bot token, xoxb-...)")
    start, until = resolve_window(settings, since)
    if start >= until:
        print("archbot: --since must be in the past", file=sys.stderr)
        return 2
    store = Store(settings.db_path)
    try:
        return asyncio.run(_digest(settings, store, post=post, since=start, until=until))
    finally:
        store.close()


async def _digest(settings: Settings, store: Store, *, post: bool, since: datetime, until: datetime) -> int:
    from bot.errors import SlackPostError
    from bot.slack.app import build_client

    slack = build_client(settings) if settings.slack_bot_token is not None else None
    started = time.monotonic()
    data = await build_digest(settings, store, slack, None, since=since, until=until)
    if not post:
        sys.stdout.write(render_markdown(data))
        return 0
    assert slack is not None and settings.digest_channel is not None
    messages = render_slack_messages(data)
    try:
        ts = await post_digest(slack, channel=settings.digest_channel, messages=messages)
    except SlackPostError as exc:
        print(f"archbot: Slack refused the digest ({exc.error or 'error'})", file=sys.stderr)
        return 1
    except Exception as exc:  # network trouble: one line, not a traceback
        print(f"archbot: could not reach Slack at SLACK_API_URL ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(
        f"Posted the digest to {settings.digest_channel} (ts {ts}, {len(messages)} message(s), "
        f"{time.monotonic() - started:.1f} s)."
    )
    return 0
