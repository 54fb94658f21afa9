"""The App Home tab: what archbot is, how to ask, what it has read, and how it is doing.

`build_home_view()` is pure (values in, a Block Kit `home` view out); `publish_home()` reads
the store, builds the view and calls `views.publish`. The lead wires `app_home_opened` to
`publish_home`.

Privacy: the tab is visible to everyone in the workspace, so "recent questions" lists only
questions asked in public channels. The store's `channel_type` says where a question was
asked; on top of that, each candidate channel is checked with `conversations.info`
(`channels:read`) and dropped unless Slack says it is a public, non-archived channel. Any
doubt (an error, an unknown channel) drops the question: the list fails closed.

`index_info` is what the retrieval side reports about the index, read defensively: either
`bot.retrieval.Searcher.info()` (`{"sources": {name: {"files", "chunks", "indexed_at"}},
"chunks": int}`) or `bot.stats.index_summary()` (`{"documents", "chunks", "indexed_at",
"sources": [{"source", "documents", "chunks", "indexed_at"}, ...]}`); missing keys are fine,
`files`/`docs` count as `documents` and `name` as `source`. None: not indexed.

Language: the tab speaks the language of the viewer's own recent questions, else `ARCHBOT_LANGUAGE`;
every string comes from the catalogue (`bot.i18n`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.i18n import DEFAULT_LANG, Lang, detect_language, t
from bot.redaction import redact_text
from bot.slack.neutralise import mention_channel, mention_user, slack_date
from bot.slack.post import publish_view
from bot.slack.render import escape_mrkdwn
from bot.store import Store

log = logging.getLogger(__name__)

RECENT_LIMIT = 5
FEEDBACK_DAYS = 30
QUESTION_CHARS = 200
MAX_SOURCES = 20
_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


@dataclass(frozen=True)
class RecentQuestion:
    channel: str
    question: str
    asked_at: float


@dataclass(frozen=True)
class HomeFigures:
    answers: int = 0
    up: int = 0
    down: int = 0
    days: int = FEEDBACK_DAYS


def _slack_date(ts: float | None, fallback: str | None = None, lang: Lang = DEFAULT_LANG) -> str:
    """A date Slack shows in each viewer's own timezone."""
    if not ts:
        return fallback if fallback is not None else t("age.unknown", lang)
    iso = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
    return slack_date(int(ts), "{date_short_pretty} {time}", iso)


def _age(ts: float | None, now: float, lang: Lang = DEFAULT_LANG) -> str:
    """How long ago, for people ("12 min ago", "12 分钟前")."""
    if not ts:
        return t("age.never", lang)
    seconds = max(0.0, now - ts)
    if seconds < 90:
        return t("age.just_now", lang)
    if seconds < 5400:
        return t("age.minutes", lang, n=round(seconds / 60))
    if seconds < 36 * 3600:
        return t("age.hours", lang, n=round(seconds / 3600))
    return t("age.days", lang, n=round(seconds / 86400))


def _int(info: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = info.get(name)
        if isinstance(value, int | float):
            return int(value)
    return None


def _clean_question(text: str) -> str:
    # Redacted before it is shortened: a value cut by "…" would pass for a placeholder (a row stored
    # before the store redacted what it keeps).
    text = redact_text(" ".join(_MENTION.sub("", text).split()))
    if len(text) > QUESTION_CHARS:
        text = text[: QUESTION_CHARS - 1].rstrip() + "…"
    return text


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def build_sources_text(index_info: dict[str, Any] | None, *, now: float, lang: Lang = DEFAULT_LANG) -> str:
    """The "what I have read" lines (mrkdwn)."""
    if not index_info:
        return t("home.nothing_indexed", lang)
    lines = []
    raw = index_info.get("sources") or []
    if isinstance(raw, dict):  # {name: {...}}, as `Searcher.info()` reports it
        raw = [{"source": name, **value} for name, value in raw.items() if isinstance(value, dict)]
    sources = [s for s in raw if isinstance(s, dict)]
    for source in sources[:MAX_SOURCES]:
        name = str(source.get("source") or source.get("name") or "docs")
        docs = _int(source, "documents", "files", "docs")
        chunks = _int(source, "chunks", "passages")
        parts = [
            t("home.docs", lang, n=docs) if docs is not None else None,
            t("home.passages", lang, n=chunks) if chunks is not None else None,
        ]
        figures = ", ".join(p for p in parts if p)
        indexed_at = source.get("indexed_at")
        when = t("home.updated", lang, age=_age(indexed_at, now, lang)) if indexed_at else ""
        detail = " · ".join(p for p in (figures, when) if p)
        lines.append(f"• *{escape_mrkdwn(name)}*" + (f" — {detail}" if detail else ""))
    if len(sources) > MAX_SOURCES:
        lines.append(t("home.more", lang, n=len(sources) - MAX_SOURCES))
    if not lines:
        docs = _int(index_info, "documents", "files", "docs")
        chunks = _int(index_info, "chunks", "passages")
        if not docs and not chunks:
            return t("home.index_empty", lang)
        lines.append(t("home.totals", lang, docs=docs or 0, chunks=chunks or 0))
    indexed_at = index_info.get("indexed_at")
    if indexed_at:
        date = _slack_date(indexed_at, lang=lang)
        lines.append(t("home.last_indexed", lang, date=date, age=_age(indexed_at, now, lang)))
    return "\n".join(lines)


def build_home_view(
    *,
    settings: Settings,
    index_info: dict[str, Any] | None,
    recent: list[RecentQuestion],
    figures: HomeFigures,
    bot_user_id: str | None = None,
    now: float | None = None,
    lang: Lang = DEFAULT_LANG,
) -> dict[str, Any]:
    """The App Home `home` view. Pure: every input is a value."""
    now = time.time() if now is None else now
    me = mention_user(bot_user_id) if bot_user_id else "@archbot"
    blocks: list[dict[str, Any]] = [
        _header(t("home.title", lang)),
        _section(t("home.intro", lang)),
        _section(t("home.how", lang, me=me)),
        _context(t("home.note", lang)),
        {"type": "divider"},
        _header(t("home.read", lang)),
        _section(build_sources_text(index_info, now=now, lang=lang)),
    ]
    if not settings.has_model:
        blocks.append(_context(t("home.no_model", lang)))
    blocks += [{"type": "divider"}, _header(t("home.recent", lang))]
    if recent:
        for item in recent[:RECENT_LIMIT]:
            question = escape_mrkdwn(_clean_question(item.question)) or t("home.no_text", lang)
            blocks.append(_section(f"> {question}"))
            blocks.append(_context(f"{mention_channel(item.channel)} · {_slack_date(item.asked_at, lang=lang)}"))
    else:
        blocks.append(_context(t("home.no_recent", lang)))
    blocks += [{"type": "divider"}, _header(t("home.going", lang))]
    rated = figures.up + figures.down
    share = t("home.share", lang, percent=round(100 * figures.up / rated)) if rated else ""
    blocks.append(
        _section(
            t(
                "home.figures",
                lang,
                answers=figures.answers,
                days=figures.days,
                up=figures.up,
                down=figures.down,
                share=share,
            )
        )
    )
    return {"type": "home", "blocks": blocks}


# -- reading the store -------------------------------------------------------------------
def load_figures(store: Store, *, now: float, days: int = FEEDBACK_DAYS) -> HomeFigures:
    since = now - days * 86400
    answers = store.query("SELECT COUNT(*) AS n FROM answers WHERE created_at >= ? AND kind != 'failure'", (since,))[0][
        "n"
    ]
    votes = {
        r["value"]: r["n"]
        for r in store.query("SELECT value, COUNT(*) AS n FROM feedback WHERE created_at >= ? GROUP BY value", (since,))
    }
    return HomeFigures(answers=answers, up=votes.get("up", 0), down=votes.get("down", 0), days=days)


def load_user_language(store: Store, user_id: str, default: Lang = DEFAULT_LANG) -> Lang:
    """The language of the user's own latest questions (newest first), else `default`."""
    rows = store.query(
        "SELECT question FROM answers WHERE user = ? AND COALESCE(question, '') != '' ORDER BY created_at DESC LIMIT 3",
        (user_id,),
    )
    questions = [str(r["question"]) for r in rows]
    return detect_language(*questions, default=default) if questions else default


def load_recent_candidates(store: Store, *, limit: int = RECENT_LIMIT * 4) -> list[RecentQuestion]:
    """Recent answered questions the store says were asked in public channels (not yet confirmed)."""
    rows = store.query(
        "SELECT channel, question, created_at FROM answers WHERE channel_type = 'channel'"
        " AND kind != 'failure' AND COALESCE(question, '') != '' ORDER BY created_at DESC LIMIT ?",
        (limit,),
    )
    return [
        RecentQuestion(channel=r["channel"], question=r["question"], asked_at=r["created_at"] or 0.0)
        for r in rows
        if not str(r["channel"]).startswith(("D", "G"))  # DMs and old-style private channels, whatever was stored
    ]


async def public_channels(client: AsyncWebClient, channels: set[str]) -> set[str]:
    """The channels Slack confirms are public and not archived; any error leaves a channel out."""
    confirmed = set()
    for channel in sorted(channels):
        try:
            info = (await client.conversations_info(channel=channel)).get("channel") or {}
        except SlackApiError as exc:
            log.info("home: channel check failed", extra={"channel": channel, "error": exc.response.get("error")})
            continue
        except Exception:
            log.warning("home: channel check failed", extra={"channel": channel}, exc_info=True)
            continue
        if info.get("is_channel") and not info.get("is_private") and not info.get("is_archived"):
            confirmed.add(channel)
    return confirmed


async def publish_home(
    client: AsyncWebClient,
    *,
    user_id: str,
    settings: Settings,
    store: Store,
    index_info: dict[str, Any] | None,
    bot_user_id: str | None = None,
) -> None:
    """Build the App Home tab for `user_id` and publish it (`views.publish`)."""
    now = time.time()
    candidates = await asyncio.to_thread(load_recent_candidates, store)  # SQL stays off the event loop
    allowed = await public_channels(client, {c.channel for c in candidates}) if candidates else set()
    recent = [c for c in candidates if c.channel in allowed][:RECENT_LIMIT]
    view = build_home_view(
        settings=settings,
        index_info=index_info,
        recent=recent,
        figures=await asyncio.to_thread(load_figures, store, now=now),
        bot_user_id=bot_user_id,
        now=now,
        lang=await asyncio.to_thread(load_user_language, store, user_id, settings.language),
    )
    await publish_view(client, user_id=user_id, view=view)
