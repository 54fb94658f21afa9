"""The weekly architecture digest: what the team asked, decided, left open, and what the docs lack.

The package reads like its pipeline; each stage is testable alone:

1. `collect` — `collect_digest()` reads the answers stored in `[since, until)` and turns them
   into a `DigestData` value (`data`), privacy-filtered before anything else sees it.
2. `summarise` — `write_summary()` asks the model, once, for a few bullet points of that
   filtered data (prompt: `prompts/digest_summary.md`); `build_digest()` is collect + summarise.
3. `render` — `render_markdown()` (the CLI) and `render_slack_messages()` (the post), pure.
4. `post` — `post_digest()` posts a parent and its thread replies; `post_scheduled_digest()`
   runs the stages for one period.
5. `command` — `digest_command()` is `archbot digest`.

When the digest fires, and the guarantee that a period is posted once, belong to the scheduler
(bot/schedule.py), which calls this package; nothing here imports the scheduler.
"""

from bot.digest.collect import collect_digest
from bot.digest.command import digest_command, resolve_window
from bot.digest.data import DigestData, ThreadItem, format_range
from bot.digest.post import post_digest, post_scheduled_digest
from bot.digest.render import (
    MAX_BLOCKS,
    SECTION_LIMIT,
    TEXT_LIMIT,
    render_markdown,
    render_slack_messages,
)
from bot.digest.summarise import build_digest, write_summary

__all__ = [
    "MAX_BLOCKS",
    "SECTION_LIMIT",
    "TEXT_LIMIT",
    "DigestData",
    "ThreadItem",
    "build_digest",
    "collect_digest",
    "digest_command",
    "format_range",
    "post_digest",
    "post_scheduled_digest",
    "render_markdown",
    "render_slack_messages",
    "resolve_window",
    "write_summary",
]
