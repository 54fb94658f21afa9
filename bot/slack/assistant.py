"""Slack's AI app surface: suggested prompts when a conversation opens, a status line while working.

With the agent messaging experience (manifest.yml `features.agent_view`), opening the DM with
archbot is an `app_home_opened` event with `tab == "messages"`: `offer_prompts(thread_ts=None)`
pins 3–4 suggested prompts at the top of the Messages tab, and each message there starts its own
thread. Apps installed from an older manifest (`assistant_view`, the side panel) get
`assistant_thread_started` instead, answered by `on_assistant_thread_started` in that thread.
The prompts are drawn from the team's own docs where possible (titles of indexed documents,
found through the searcher) and topped up with general architecture questions. `set_status`
shows the "is thinking…" line under the thread while a job runs.

Both are cosmetic: a failure is logged and swallowed, never raised into the job.

`build_suggested_prompts()` is pure, so the choice of prompts is tested without Slack.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.i18n import DEFAULT_LANG, Lang, t
from bot.slack.post import set_assistant_status, set_suggested_prompts

log = logging.getLogger(__name__)

MAX_PROMPTS = 4
DOC_PROMPTS = 2  # at most this many come from doc titles; the rest stay general
TITLE_CHARS = 60
THINKING_STATUS = t("assistant.thinking")
# Broad queries that surface a team's design documents, whatever the team calls them.
SEED_QUERIES = ("architecture overview", "design decision", "service boundaries", "deployment", "架构 设计")
_JUNK_TITLE = re.compile(
    r"^(readme|changelog|license|licence|index|todo|notes?|contributing|untitled|test|draft)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Prompt:
    title: str  # the short label on the button
    message: str  # what is sent when it is clicked

    def as_slack(self) -> dict[str, str]:
        return {"title": self.title, "message": self.message}


GENERIC_KEYS = ("slow", "events", "review", "data")  # assistant.<key>_title / _message in the catalogue


def generic_prompts(lang: Lang = DEFAULT_LANG) -> tuple[Prompt, ...]:
    return tuple(Prompt(t(f"assistant.{k}_title", lang), t(f"assistant.{k}_message", lang)) for k in GENERIC_KEYS)


GENERIC_PROMPTS = generic_prompts()


def usable_title(title: str) -> str | None:
    """A doc title fit for a button: cleaned, not a file name or a boilerplate page; else None."""
    text = " ".join(re.sub(r"[#*_`>\[\]]+", " ", title).split()).strip(" -:·")
    if len(text) < 4 or _JUNK_TITLE.match(text):
        return None
    if re.fullmatch(r"[\w./-]+\.(md|markdown|txt|rst)", text, re.IGNORECASE):
        return None
    if len(text) > TITLE_CHARS:
        cut = text[:TITLE_CHARS].rsplit(" ", 1)[0]
        text = (cut if len(cut) >= 20 else text[:TITLE_CHARS]).rstrip(" ,;:-") + "…"
    return text


def build_suggested_prompts(
    doc_titles: list[str], *, limit: int = MAX_PROMPTS, lang: Lang = DEFAULT_LANG
) -> list[Prompt]:
    """Up to `DOC_PROMPTS` prompts about the team's documents, then general ones, `limit` in all."""
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for raw in doc_titles:
        title = usable_title(raw)
        if title is None or title.casefold() in seen:
            continue
        seen.add(title.casefold())
        prompts.append(
            Prompt(
                title=t("assistant.doc_title", lang, title=title), message=t("assistant.doc_message", lang, title=title)
            )
        )
        if len(prompts) >= DOC_PROMPTS:
            break
    for prompt in generic_prompts(lang):
        if len(prompts) >= limit:
            break
        prompts.append(prompt)
    return prompts[:limit]


def _titles_by_search(search: Any, limit: int) -> list[str]:
    titles: list[str] = []
    for query in SEED_QUERIES:
        for hit in search(query, k=5) or []:
            if getattr(hit, "source", "") == "knowledge":
                continue  # the bundled library is not "the team's docs"
            title = getattr(hit, "title", "") or str(getattr(hit, "heading", "")).split(" > ")[0]
            if title and title not in titles:
                titles.append(title)
        if len(titles) >= limit:
            break
    return titles[:limit]


async def doc_titles(searcher: Any, *, limit: int = 8) -> list[str]:
    """Titles of the team's indexed documents (not the bundled pattern library), best effort.

    Uses the searcher's `doc_titles(limit=)` when it has one, else a few broad searches (in a
    worker thread: the searcher is synchronous). Any error gives [] (the prompts stay general).
    """
    if searcher is None:
        return []
    try:
        lister = getattr(searcher, "doc_titles", None)
        if callable(lister):
            found = lister(limit=limit)
            found = await found if inspect.isawaitable(found) else found
            return [str(t) for t in found if t][:limit]
        search = getattr(searcher, "search", None)
        if not callable(search):
            return []
        return await asyncio.to_thread(_titles_by_search, search, limit)
    except Exception:
        log.warning("assistant: could not read doc titles for suggested prompts", exc_info=True)
        return []


async def on_assistant_thread_started(
    client: AsyncWebClient,
    *,
    channel: str,
    thread_ts: str,
    settings: Settings,
    searcher: Any,
) -> list[Prompt]:
    """Offer suggested prompts in a new assistant thread (the older side panel); returns what was
    offered ([] on failure)."""
    return await offer_prompts(client, channel=channel, thread_ts=thread_ts, searcher=searcher, lang=settings.language)


async def offer_prompts(
    client: AsyncWebClient, *, channel: str, thread_ts: str | None, searcher: Any, lang: Lang
) -> list[Prompt]:
    """Suggested prompts in an assistant thread, or with `thread_ts=None` pinned at the top of the
    DM's Messages tab (the agent messaging experience). Returns what was offered ([] on failure)."""
    prompts = build_suggested_prompts(await doc_titles(searcher), lang=lang)
    try:
        await set_suggested_prompts(
            client,
            channel=channel,
            thread_ts=thread_ts,
            title=t("assistant.suggested_title", lang),
            prompts=[p.as_slack() for p in prompts],
        )
    except SlackApiError as exc:
        log.warning(
            "assistant: setSuggestedPrompts failed",
            extra={"channel": channel, "thread_ts": thread_ts, "error": exc.response.get("error")},
        )
        return []
    except Exception:
        log.warning("assistant: setSuggestedPrompts failed", extra={"channel": channel}, exc_info=True)
        return []
    return prompts


async def set_status(client: AsyncWebClient, *, channel: str, thread_ts: str, status: str) -> bool:
    """Show (or with "" clear) the status line under an assistant thread. Cosmetic: never raises."""
    try:
        await set_assistant_status(client, channel=channel, thread_ts=thread_ts, status=status)
    except SlackApiError as exc:
        log.info(
            "assistant: setStatus failed",
            extra={"channel": channel, "thread_ts": thread_ts, "error": exc.response.get("error")},
        )
        return False
    except Exception:
        log.warning("assistant: setStatus failed", extra={"channel": channel}, exc_info=True)
        return False
    return True
