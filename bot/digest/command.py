"""`archbot digest`: print the digest as markdown, or post it to ARCHBOT_DIGEST_CHANNEL."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.digest.data import format_range
from bot.digest.post import post_digest
from bot.digest.render import render_markdown, render_slack_messages
from bot.digest.summarise import build_digest
from bot.redaction import redact_text
from bot.store import Store
from bot.store_async import open_store

DEFAULT_DAYS = 7


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


def window_key(since: datetime, until: datetime) -> str:
    """A window posted from the command line, by its days in ARCHBOT_TZ: running `--post` twice
    the same day names the same window (the scheduler's periods are keyed by their fire time)."""
    return f"cli:{since:%Y-%m-%d}/{until:%Y-%m-%d}"


def digest_command(settings: Settings, *, post: bool, since: datetime | None, repost: bool = False) -> int:
    """`archbot digest`: print the digest as markdown (default) or post it to ARCHBOT_DIGEST_CHANNEL.

    A window is posted once: a second `--post` for the same window says where it is and posts
    nothing, unless `repost` is set."""
    if post and not settings.digest_channel:
        return _config_error("ARCHBOT_DIGEST_CHANNEL", "is not set; `archbot digest --post` needs a channel id")
    if post and settings.slack_bot_token is None:
        return _config_error("SLACK_BOT_TOKEN", "is required for `archbot digest --post` (a bot token, xoxb-...)")
    start, until = resolve_window(settings, since)
    if start >= until:
        print("archbot: --since must be in the past", file=sys.stderr)
        return 2
    store = open_store(settings)
    try:
        if not post:
            return asyncio.run(_digest(settings, store, post=False, since=start, until=until))
        assert settings.digest_channel is not None
        key = window_key(start, until)
        claimed = store.claim_digest(key, settings.digest_channel)
        if not claimed and not repost:
            row = store.query("SELECT channel, ts, status FROM digests WHERE period = ?", (key,))[0]
            where = f"{row['channel']} (ts {row['ts']})" if row["status"] == "posted" else str(row["channel"])
            state = "was already posted to" if row["status"] == "posted" else "is being posted to"
            print(f"The digest for {format_range(start, until)} {state} {where}; --repost posts it again.")
            return 0
        status = asyncio.run(
            _digest(settings, store, post=True, since=start, until=until, on_posted=lambda ts: _posted(store, key, ts))
        )
        if status != 0 and claimed:
            store.finish_digest(key, ts=None, ok=False)  # nothing went out: free the window
        return status
    finally:
        store.close()


def _posted(store: Store, key: str, ts: str) -> None:
    store.finish_digest(key, ts=ts, ok=True)


async def _digest(
    settings: Settings,
    store: Store,
    *,
    post: bool,
    since: datetime,
    until: datetime,
    on_posted: Callable[[str], None] | None = None,
) -> int:
    from bot.errors import SlackPostError
    from bot.slack.app import build_client

    slack = build_client(settings) if settings.slack_bot_token is not None else None
    started = time.monotonic()
    data = await build_digest(settings, store, slack, None, since=since, until=until)
    if not post:
        sys.stdout.write(redact_text(render_markdown(data)))  # rows stored before redaction existed, too
        return 0
    assert slack is not None and settings.digest_channel is not None
    messages = render_slack_messages(data)
    try:
        ts = await post_digest(slack, channel=settings.digest_channel, messages=messages, on_parent=on_posted)
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
