"""Stage 1: the answers stored in a window, privacy-filtered, grouped and linked.

This is where privacy is enforced, before anything else sees the data: only threads from
public channels (`channel_type == "channel"`) are kept, plus the channels listed in
`ARCHBOT_DIGEST_PRIVATE_CHANNELS`. Private channels, group DMs and DMs never reach the rendered
digest or the model request. With a Slack client, every kept channel is double-checked with
`conversations.info` (a channel that turned private is dropped; one the bot left, or a failing
call, is skipped and counted) and each thread gets its permalink (`chat.getPermalink`; a
deleted thread or a failing call: skipped and counted). A channel whose stored type is unknown
(e.g. a slash command's) is only kept once `conversations.info` says it is public.
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

from bot.digest.data import (
    MAX_ITEMS,
    OTHER_TOPIC,
    DigestData,
    DocCount,
    GapItem,
    Item,
    ThreadItem,
    ThreadKey,
    doc_label,
    listing,
    one_line,
    plain_text,
)
from bot.i18n import DEFAULT_LANG, Lang, t

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.config import Settings
    from bot.store import Store, StoredAnswer

log = logging.getLogger(__name__)

TOPIC_CHARS = 60
TOP_DOCS = 5
SLACK_CONCURRENCY = 6  # permalink / conversations.info calls in flight
PUBLIC_TYPES = {"channel"}
PRIVATE_TYPES = {"group", "mpim", "im"}
DELETED_ERRORS = {"message_not_found", "thread_not_found"}
GONE_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "access_denied"}
UNCHECKABLE_ERRORS = {"not_allowed_token_type", "no_permission"}


def _topic_from_path(path: str) -> str:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    words = re.sub(r"[-_]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else OTHER_TOPIC


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
    lang: Lang = DEFAULT_LANG,
) -> tuple[dict[str, list[ThreadItem]], list[Item], list[Item], list[GapItem]]:
    """Group the threads by topic and pick the decisions, open questions and gaps (no I/O)."""
    topics: dict[str, list[ThreadItem]] = {}
    display: dict[str, str] = {}
    for thread in threads.values():
        topics.setdefault(display.setdefault(thread.topic.casefold(), thread.topic), []).append(thread)
    topics = dict(sorted(topics.items(), key=lambda kv: (kv[0] == OTHER_TOPIC, -len(kv[1]), kv[0].casefold())))

    decisions: list[Item] = []
    open_questions: list[Item] = []
    gap_items: list[GapItem] = []
    seen: set[tuple[ThreadKey, str]] = set()
    seen_gaps: set[tuple[str, str]] = set()
    for key, thread in threads.items():
        items = by_thread[key]
        for a in items:
            decision = one_line(plain_text(a.decision or "", names), 240)
            if a.kind == "review":
                text, note = decision or t("digest.reviewed", lang, line=thread.line), t("digest.note_review", lang)
            elif decision:
                text, note = decision, ""
            else:
                continue
            if (key, text.casefold()) not in seen:
                seen.add((key, text.casefold()))
                decisions.append(Item(text=text, note=note, key=key))
        last = items[-1]
        if last.kind == "clarify" and last_in_thread.get(key, 0.0) <= last.created_at:
            open_questions.append(Item(text=thread.line, note=t("digest.note_waiting", lang), key=key))
        elif any(feedback.get(a.id, {}).get("down", 0) for a in items):
            open_questions.append(Item(text=thread.line, note=t("digest.note_downvoted", lang), key=key))
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


def _shown_keys(
    topics: dict[str, list[ThreadItem]], decisions: list[Item], open_questions: list[Item], gaps: list[GapItem]
) -> list[ThreadKey]:
    """The threads the rendered digest links to (what `build_sections` will show)."""
    shown, _, _ = listing(topics)
    keys: list[ThreadKey] = [(item.channel, item.thread_ts) for _, items, _ in shown for item in items]
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
    data = DigestData(since=since.astimezone(zone), until=until.astimezone(zone), lang=settings.language)
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
            lang=settings.language,
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
