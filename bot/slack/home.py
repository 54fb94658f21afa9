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
from bot.slack.neutralise import mention_channel, mention_user, slack_date
from bot.slack.post import publish_view
from bot.slack.render import escape_mrkdwn
from bot.stats import format_age
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


def _slack_date(ts: float | None, fallback: str = "unknown") -> str:
    """A date Slack shows in each viewer's own timezone."""
    if not ts:
        return fallback
    iso = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
    return slack_date(int(ts), "{date_short_pretty} {time}", iso)


def _age(ts: float | None, now: float) -> str:
    return format_age(now - ts) if ts else "never"


def _int(info: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = info.get(name)
        if isinstance(value, int | float):
            return int(value)
    return None


def _clean_question(text: str) -> str:
    text = " ".join(_MENTION.sub("", text).split())
    if len(text) > QUESTION_CHARS:
        text = text[: QUESTION_CHARS - 1].rstrip() + "…"
    return text


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def build_sources_text(index_info: dict[str, Any] | None, *, now: float) -> str:
    """The "what I have read" lines (mrkdwn)."""
    if not index_info:
        return "Nothing indexed yet. Whoever runs archbot can build the index with `archbot index`."
    lines = []
    raw = index_info.get("sources") or []
    if isinstance(raw, dict):  # {name: {...}}, as `Searcher.info()` reports it
        raw = [{"source": name, **value} for name, value in raw.items() if isinstance(value, dict)]
    sources = [s for s in raw if isinstance(s, dict)]
    for source in sources[:MAX_SOURCES]:
        name = str(source.get("source") or source.get("name") or "docs")
        docs = _int(source, "documents", "files", "docs")
        chunks = _int(source, "chunks", "passages")
        parts = [f"{docs} docs" if docs is not None else None, f"{chunks} passages" if chunks is not None else None]
        figures = ", ".join(p for p in parts if p)
        indexed_at = source.get("indexed_at")
        when = f"updated {_age(indexed_at, now)}" if indexed_at else ""
        detail = " · ".join(p for p in (figures, when) if p)
        lines.append(f"• *{escape_mrkdwn(name)}*" + (f" — {detail}" if detail else ""))
    if len(sources) > MAX_SOURCES:
        lines.append(f"• … and {len(sources) - MAX_SOURCES} more")
    if not lines:
        docs = _int(index_info, "documents", "files", "docs")
        chunks = _int(index_info, "chunks", "passages")
        if not docs and not chunks:
            return "The index is empty. Whoever runs archbot can build it with `archbot index`."
        lines.append(f"• {docs or 0} docs, {chunks or 0} passages")
    indexed_at = index_info.get("indexed_at")
    if indexed_at:
        lines.append(f"Last indexed {_slack_date(indexed_at)} ({_age(indexed_at, now)}).")
    return "\n".join(lines)


def build_home_view(
    *,
    settings: Settings,
    index_info: dict[str, Any] | None,
    recent: list[RecentQuestion],
    figures: HomeFigures,
    bot_user_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The App Home `home` view. Pure: every input is a value."""
    now = time.time() if now is None else now
    me = mention_user(bot_user_id) if bot_user_id else "@archbot"
    blocks: list[dict[str, Any]] = [
        _header("archbot: architecture questions, answered from your docs"),
        _section(
            "I answer software-architecture questions for this team, grounded in the team's own docs "
            "and a curated pattern library. Every answer cites the passages it relies on, so you can check "
            "them, and says plainly when the docs don't cover something."
        ),
        _section(
            "*How to ask*\n"
            f"• Mention {me} in any channel I'm in, ideally in the thread where the discussion is: "
            "I read the thread first.\n"
            "• Send me a direct message (the *Messages* tab above).\n"
            "• `/arch-review` followed by a proposal (or nothing, for a form) asks for a structured review.\n"
            "• Follow-ups in a thread I've answered don't need another mention."
        ),
        _context(
            "Answers mention where sources disagree and what is missing. "
            "Use 👍 / 👎 under an answer to tell the team running me how it did."
        ),
        {"type": "divider"},
        _header("What I've read"),
        _section(build_sources_text(index_info, now=now)),
    ]
    if not settings.has_model:
        blocks.append(
            _context(
                "No model key is configured, so answers are retrieval-only: the most relevant passages, "
                "without a written answer."
            )
        )
    blocks += [{"type": "divider"}, _header("Recent questions")]
    if recent:
        for item in recent[:RECENT_LIMIT]:
            question = escape_mrkdwn(_clean_question(item.question)) or "(no text)"
            blocks.append(_section(f"> {question}"))
            blocks.append(_context(f"{mention_channel(item.channel)} · {_slack_date(item.asked_at)}"))
    else:
        blocks.append(_context("No questions from public channels yet."))
    blocks += [{"type": "divider"}, _header("How it's going")]
    rated = figures.up + figures.down
    share = f" ({round(100 * figures.up / rated)}% helpful)" if rated else ""
    blocks.append(
        _section(
            f"*{figures.answers}* answers in the last {figures.days} days · "
            f"👍 *{figures.up}* · 👎 *{figures.down}*{share}"
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
    )
    await publish_view(client, user_id=user_id, view=view)
