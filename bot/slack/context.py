"""Thread context: a Slack thread → the conversation `Turn`s the model sees, within a token budget.

- History comes from `conversations.replies`, every page.
- The bot's own earlier replies become assistant turns; everyone else's messages are user
  turns, prefixed with the speaker's name (resolved with `users.info`, cached in the store),
  and consecutive user turns are merged (the Messages API wants alternating roles).
- The newest turns are kept within the budget; the question itself always survives.
- Slack's escaping and link syntax are undone so the model reads plain text, and credentials
  anyone pasted are redacted (`bot/redaction.py`): the model, the store and the logs never see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.redaction import redact_text
from bot.slack.render import without_quotes
from bot.store_async import AsyncStore
from bot.types import Turn

log = logging.getLogger(__name__)

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]+))?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]+))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")
_SKIP_SUBTYPES = {
    "channel_join",
    "channel_leave",
    "group_join",
    "group_leave",
    "message_deleted",
    "message_changed",
    "channel_topic",
    "channel_purpose",
    "channel_name",
    "pinned_item",
    "assistant_app_thread",
}
FAILURE_PREFIX = ":warning:"
BOT_OPENED_THREAD = "(You opened this thread yourself; your opening message follows.)"


@dataclass(frozen=True)
class BotIdentity:
    user_id: str
    bot_id: str | None


def estimate_tokens(text: str) -> int:
    """A cheap token estimate: CJK characters count one each, the rest four characters a token."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk) // 4 + 1


def clean_text(text: str, *, bot_user_id: str | None, names: dict[str, str] | None = None) -> str:
    """Slack message text → plain text: the bot's mention removed, others named, links and escapes
    undone, credentials redacted."""
    names = names or {}

    def user(m: re.Match[str]) -> str:
        uid = m.group(1)
        if uid == bot_user_id:
            return ""
        return "@" + (names.get(uid) or m.group(2) or uid)

    text = _USER_MENTION.sub(user, text)
    text = _CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text)
    text = _SPECIAL.sub(lambda m: "@" + m.group(1), text)
    return redact_text(html.unescape(text).strip())


def mentioned_users(text: str) -> set[str]:
    return {m.group(1) for m in _USER_MENTION.finditer(text)}


class NameResolver:
    """User id → display name, via the store's cache, then `users.info`. Never raises."""

    def __init__(self, client: AsyncWebClient, store: AsyncStore) -> None:
        self.client = client
        self.store = store
        self._memo: dict[str, str] = {}
        self._asking: dict[str, asyncio.Future[str]] = {}

    async def name(self, user_id: str) -> str:
        if user_id in self._memo:
            return self._memo[user_id]
        # One lookup per user at a time: a burst of questions from one person asks the store (and
        # Slack) once, the others wait for that answer.
        return await _one_lookup(self._asking, user_id, lambda: self._look_up(user_id))

    async def _look_up(self, user_id: str) -> str:
        try:
            name = await self.store.user_name(user_id)
        except Exception:  # a cache: ask Slack instead
            name = None
        if name is None:
            try:
                resp = await self.client.users_info(user=user_id)
                info = resp.get("user") or {}
                profile = info.get("profile") or {}
                name = profile.get("display_name") or info.get("real_name") or info.get("name") or user_id
                with contextlib.suppress(Exception):
                    await self.store.save_user_name(user_id, name)
            except SlackApiError as exc:
                log.info("users.info failed", extra={"user": user_id, "error": exc.response.get("error")})
                name = user_id
        self._memo[user_id] = name
        return name


async def _one_lookup(
    asking: dict[str, asyncio.Future[str]], key: str, look_up: Callable[[], Awaitable[str]]
) -> str:
    """The answer of the lookup in flight for `key`, or of a new one: concurrent callers share one."""
    future = asking.get(key)
    if future is None:
        future = asking[key] = asyncio.ensure_future(look_up())
        future.add_done_callback(lambda _done: asking.pop(key, None))
    return await asyncio.shield(future)


async def resolve_channel_type(client: AsyncWebClient, channel: str) -> str:
    """channel | group | im | mpim from conversations.info; "unknown" (treated as private) on failure."""
    try:
        info = (await client.conversations_info(channel=channel)).get("channel") or {}
    except SlackApiError as exc:
        log.info("conversations.info failed", extra={"channel": channel, "error": exc.response.get("error")})
        return "unknown"
    if info.get("is_im"):
        return "im"
    if info.get("is_mpim"):
        return "mpim"
    return "group" if info.get("is_private") else "channel"


class ChannelKinds:
    """Channel id → kind (`resolve_channel_type`), asked of Slack once per channel and `ttl` seconds,
    one lookup at a time per channel: a burst of questions in one channel makes one
    `conversations.info` call, not one each. A failed lookup ("unknown") is not remembered."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[str, float]] = {}
        self._asking: dict[str, asyncio.Future[str]] = {}

    async def kind(self, channel: str) -> str:
        known = self._known.get(channel)
        if known is not None and self._clock() - known[1] < self.ttl:
            return known[0]
        return await _one_lookup(self._asking, channel, lambda: self._look_up(channel))

    async def _look_up(self, channel: str) -> str:
        kind = await resolve_channel_type(self.client, channel)
        if kind != "unknown":
            self._known[channel] = (kind, self._clock())
        return kind


async def fetch_replies(client: AsyncWebClient, *, channel: str, thread_ts: str, page_size: int = 200) -> list[dict]:
    """Every message of a thread, oldest first (all pages)."""
    messages: list[dict] = []
    cursor: str | None = None
    for _ in range(100):  # a bound: 20 000 messages is more than any thread we answer
        resp = await client.conversations_replies(channel=channel, ts=thread_ts, limit=page_size, cursor=cursor)
        messages.extend(resp.get("messages") or [])
        cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor or not resp.get("has_more", True):
            break
    seen: set[str] = set()
    unique = []
    for m in messages:
        if m.get("ts") not in seen:
            seen.add(m.get("ts", ""))
            unique.append(m)
    return sorted(unique, key=lambda m: float(m.get("ts", "0")))


def _message_text(message: dict) -> str:
    """The text of a message; for our own answers, the markdown block (richer than the fallback)."""
    for block in message.get("blocks") or []:
        if block.get("type") == "markdown" and block.get("text"):
            return str(block["text"])
    return str(message.get("text") or "")


async def build_turns(
    messages: list[dict],
    *,
    bot: BotIdentity,
    names: NameResolver | None,
    budget_tokens: int,
    question_ts: str,
    question_text: str,
    question_user: str | None,
) -> list[Turn]:
    """Map thread messages (oldest first) to alternating turns ending with the question."""
    raw: list[tuple[str, str]] = []  # (role, text)
    has_question = False
    for m in messages:
        ts = str(m.get("ts", ""))
        if m.get("subtype") in _SKIP_SUBTYPES:
            continue
        if float(ts or 0) > float(question_ts or 0):
            break  # messages after the question are not part of it
        is_ours = m.get("user") == bot.user_id or (bot.bot_id is not None and m.get("bot_id") == bot.bot_id)
        text = _message_text(m)
        if is_ours:
            if text.startswith(FAILURE_PREFIX) or not text.strip():
                continue  # our failure notices are not part of the conversation
            raw.append(("assistant", redact_text(without_quotes(text).strip())))  # an answer from before redaction
            continue
        mention_names = {}
        if names is not None:
            for uid in mentioned_users(text):
                if uid != bot.user_id:
                    mention_names[uid] = await names.name(uid)
        body = clean_text(text, bot_user_id=bot.user_id, names=mention_names)
        if not body:
            continue
        if m.get("bot_id") or m.get("subtype") == "bot_message":
            speaker = str(m.get("username") or (m.get("bot_profile") or {}).get("name") or "another app")
        elif m.get("user") and names is not None:
            speaker = await names.name(str(m["user"]))
        else:
            speaker = str(m.get("user") or "someone")
        raw.append(("user", f"{speaker}: {body}"))
        if ts == question_ts:
            has_question = True
    if not has_question:
        speaker = (await names.name(question_user)) if names is not None and question_user else "user"
        body = clean_text(question_text, bot_user_id=bot.user_id)
        raw.append(("user", f"{speaker}: {body}" if body else f"{speaker}: (no text)"))
    turns = merge_turns(raw)
    if turns and turns[0].role == "assistant":
        # A thread the bot opened itself (an /arch-review): its opening messages are the context
        # of every follow-up. A conversation starts with a user turn, so a note stands in for one.
        turns.insert(0, Turn(role="user", text=BOT_OPENED_THREAD))
    return trim_turns(turns, budget_tokens)


def merge_turns(raw: list[tuple[str, str]]) -> list[Turn]:
    turns: list[Turn] = []
    for role, text in raw:
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role=turns[-1].role, text=f"{turns[-1].text}\n\n{text}")
        else:
            turns.append(Turn(role=role, text=text))  # type: ignore[arg-type]
    return turns


def trim_turns(turns: list[Turn], budget_tokens: int) -> list[Turn]:
    """Keep the newest turns within the budget; the last (the question) always, cut from its start if huge."""
    if not turns:
        return turns
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = estimate_tokens(turn.text)
        if kept and used + cost > budget_tokens:
            break
        if not kept and cost > budget_tokens:
            keep_chars = max(200, budget_tokens * 2)
            turn = Turn(role=turn.role, text="…" + turn.text[-keep_chars:])
            cost = estimate_tokens(turn.text)
        kept.append(turn)
        used += cost
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)  # the conversation must open with a user turn
    return kept
