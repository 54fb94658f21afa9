"""Stage 2: one model request for a short summary of the already-filtered data.

Only when a key is configured; any failure gives `None`, and the digest goes out plain. The
system prompt is `prompts/digest_summary.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from bot.config import PROMPTS_DIR
from bot.digest.collect import collect_digest
from bot.digest.data import MAX_ITEMS, DigestData, format_range, listing
from bot.i18n import t
from bot.redaction import redact_text

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.config import Settings
    from bot.store import Store

log = logging.getLogger(__name__)

SUMMARY_CHARS = 2500
SUMMARY_MAX_TOKENS = 700


@cache
def summary_system() -> str:
    """The summary's system prompt (read once)."""
    from bot.architect.prompt import load_prompt

    return load_prompt(PROMPTS_DIR / "digest_summary.md").text


def build_summary_request(data: DigestData) -> str:
    """The material the model summarises: the digest's own (filtered) data, without links."""
    lines = [t("digest.write_in", data.lang), "", f"Period: {format_range(data.since, data.until)}", ""]
    lines.append("Questions by topic:")
    shown, left_threads, left_topics = listing(data.topics)
    for topic, items, more in shown:
        lines.append(f"- {topic} ({len(items) + more})")
        lines.extend(f"  - {item.line}" for item in items)
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
    return redact_text("\n".join(lines))  # what people wrote, read back (also from rows stored before redaction)


async def write_summary(client: Any, settings: Settings, data: DigestData) -> str | None:
    """One model request: a few bullet points from the filtered data. None on any failure."""
    if data.empty or not data.threads():
        return None
    try:
        message = await client.messages.create(
            model=settings.model,
            max_tokens=SUMMARY_MAX_TOKENS,
            system=summary_system(),
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
