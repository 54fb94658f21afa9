"""Posting: the digest's parent message and its thread replies, once per period.

Idempotence per period lives with the scheduler (bot/schedule.py), which claims a period in
the store before calling `post_scheduled_digest` and records it as posted via `on_parent`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.digest.render import SlackMessage, render_slack_messages
from bot.digest.summarise import build_digest

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.config import Settings
    from bot.store import Store

log = logging.getLogger(__name__)


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
